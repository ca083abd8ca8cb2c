"""Thin views: validate, call a service, serialize."""

from django.db import IntegrityError, transaction
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..cancellation import message_cancel
from ..models import Channel, Message
from ..submission import message_submit, message_submit_batch
from .errors import Conflict, error_body
from .filters import MessageFilter
from .pagination import NewestFirst
from .permissions import IsAdminApplication
from .resources import accepted_resource
from .schema import SUBMISSION_LIMITED, CancelTooLate, ErrorSerializer
from .serializers import (
    BatchInputSerializer,
    BatchResultSerializer,
    ChannelSerializer,
    MessageDetailSerializer,
    MessageInputSerializer,
    MessageSerializer,
    message_input,
    message_resource,
)
from .throttling import daily_quota

IDEMPOTENCY_KEY_MAX = Message._meta.get_field("idempotency_key").max_length


class MessageListCreateView(generics.ListAPIView):
    serializer_class = MessageSerializer
    pagination_class = NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = MessageFilter

    def get_queryset(self):
        return selectors.messages_of(self.request.user)

    @extend_schema(
        request=MessageInputSerializer,
        responses={202: MessageSerializer, 429: SUBMISSION_LIMITED},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
    )
    def post(self, request):
        data, key = message_input(request.data), idempotency_key(request)
        with daily_quota(request.user, 1, idempotency_key=key) as spent:
            message, created = message_submit(application=request.user, data=data, idempotency_key=key)
            if not created:
                spent.give_back()  # a replay: it accepted nothing new
        return Response(accepted_resource(message), status=status.HTTP_202_ACCEPTED)


def idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key and len(key) > IDEMPOTENCY_KEY_MAX:
        raise ValidationError({"Idempotency-Key": [f"at most {IDEMPOTENCY_KEY_MAX} characters"]})
    return key


class MessageBatchView(APIView):
    @extend_schema(request=BatchInputSerializer, responses={202: BatchResultSerializer, 429: SUBMISSION_LIMITED})
    def post(self, request):
        serializer = BatchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data["messages"]
        with daily_quota(request.user, len(items)):
            messages = message_submit_batch(
                application=request.user, items=items, context=serializer.validated_data.get("context"))
        return Response(
            {"messages": [accepted_resource(m) for m in messages]},
            status=status.HTTP_202_ACCEPTED,
        )


class MessageDetailView(APIView):
    @extend_schema(responses=MessageDetailSerializer)
    def get(self, request, message_id: str):
        message = selectors.message_with_events(request.user, message_id)
        if message is None:
            raise Http404
        return Response(MessageDetailSerializer(message).data)


class MessageCancelView(APIView):
    @extend_schema(request=None, responses={
        200: MessageSerializer,
        409: OpenApiResponse(CancelTooLate, description="Too late: a FAILED_CANCELLATION event was "
                                                        "recorded and the message is unchanged."),
    })
    def post(self, request, message_id: str):
        message = selectors.messages_of(request.user).filter(id=message_id).first()
        if message is None:
            raise Http404
        cancelled = message_cancel(message=message)
        message.refresh_from_db()
        if cancelled:
            return Response(message_resource(message))
        return Response(
            {**error_body("cancel_too_late",
                          f"The message is {message.status}: it can no longer be cancelled."),
             "id": message.id, "status": message.status},
            status=status.HTTP_409_CONFLICT,
        )


NAME_TAKEN = OpenApiResponse(ErrorSerializer, description="Another channel has this name (name_taken).")


@extend_schema_view(create=extend_schema(responses={201: ChannelSerializer, 409: NAME_TAKEN}),
                    update=extend_schema(responses={200: ChannelSerializer, 409: NAME_TAKEN}),
                    partial_update=extend_schema(responses={200: ChannelSerializer, 409: NAME_TAKEN}))
class ChannelViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Channels are shared infrastructure: only admin applications manage them."""

    permission_classes = [IsAdminApplication]
    serializer_class = ChannelSerializer
    queryset = Channel.objects.order_by("name")
    lookup_field = "name"

    def perform_create(self, serializer):
        self._save_unique(serializer)

    def perform_update(self, serializer):
        self._save_unique(serializer)

    @staticmethod
    def _save_unique(serializer):
        """The unique index decides, so two requests racing for one name cannot both win."""
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:
            name = serializer.validated_data.get("name")
            raise Conflict(f"A channel named {name!r} exists already.", code="name_taken") from None
