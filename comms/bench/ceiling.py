"""The stack's ceiling: the least a DRF view can do with a message body, for the benchmark
to measure POST /api/v1/messages against (issue 12: `single_post_ceiling_ratio`).

It runs under the same gunicorn line and the same settings (middleware, parser, renderer)
as the platform's web process, validates the single POST's body with a plain DRF
serializer, and inserts one row with one INSERT: no key, no channel lookup, no event, no
transaction of its own. Served by `comms.bench.ceiling_wsgi` at POST /ceiling.
"""

import json

from django.db import connection
from django.urls import path
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

TABLE = "relay_bench_ceiling"
_COLUMNS = {
    # The shape of the message's own columns, in a table nothing else uses.
    "postgresql": "id bigserial PRIMARY KEY, channel varchar(100) NOT NULL, receiver varchar(320) NOT NULL, "
                  "content jsonb NOT NULL, send_at timestamptz NULL",
    "sqlite": "id integer PRIMARY KEY, channel varchar(100) NOT NULL, receiver varchar(320) NOT NULL, "
              "content text NOT NULL, send_at datetime NULL",
}


def ceiling_table_create() -> None:
    """Create the ceiling's table, empty (the benchmark calls this before each run)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(f"CREATE TABLE {TABLE} ({_COLUMNS[connection.vendor]})")


def ceiling_table_drop() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


class CeilingContentSerializer(serializers.Serializer):
    text = serializers.CharField()


class CeilingInputSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=100)
    receiver = serializers.CharField(max_length=320)
    content = CeilingContentSerializer()
    sendAt = serializers.DateTimeField(required=False, allow_null=True)


class CeilingView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        serializer = CeilingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (channel, receiver, content, send_at) VALUES (%s, %s, %s, %s)",
                [data["channel"], data["receiver"], json.dumps(data["content"]), data.get("sendAt")],
            )
        return Response({"channel": data["channel"], "receiver": data["receiver"]},
                        status=status.HTTP_202_ACCEPTED)


urlpatterns = [path("ceiling", CeilingView.as_view())]
