"""Thin views over deliveries.services; everything is scoped to the calling application."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from comms.api.pagination import NewestFirst
from comms.api.schema import Recovered

from .. import services
from ..models import Delivery, DeliveryAttempt, Subscription
from .serializers import (
    DeliverySerializer,
    RecoverSerializer,
    SubscriptionSerializer,
    SubscriptionWithSecretSerializer,
)


class SubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = SubscriptionSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        return Subscription.objects.filter(application=self.request.user)

    @extend_schema(request=SubscriptionSerializer, responses={201: SubscriptionWithSecretSerializer})
    def create(self, request):
        serializer = SubscriptionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = services.subscription_create(application=request.user, **serializer.validated_data)
        return Response(SubscriptionWithSecretSerializer(subscription).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SubscriptionSerializer, responses=SubscriptionSerializer)
    def update(self, request, pk=None, partial=False):
        subscription = self.get_object()
        serializer = SubscriptionSerializer(subscription, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        services.subscription_update(subscription=subscription, **serializer.validated_data)
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=SubscriptionSerializer, responses=SubscriptionSerializer)
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    def perform_destroy(self, subscription):
        services.subscription_delete(subscription=subscription)

    @extend_schema(request=None, responses=SubscriptionWithSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        subscription = services.subscription_rotate_secret(subscription=self.get_object())
        return Response(SubscriptionWithSecretSerializer(subscription).data)

    @extend_schema(
        responses=DeliverySerializer(many=True),
        parameters=[OpenApiParameter("status", str, enum=list(Delivery.Status.values))],
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        subscription = self.get_object()
        queryset = subscription.deliveries.select_related("event").prefetch_related(
            Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number")))
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in Delivery.Status.values:
                raise ValidationError({"status": [f"Must be one of {list(Delivery.Status.values)}."]})
            queryset = queryset.filter(status=wanted)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(request=RecoverSerializer, responses={202: Recovered})
    @action(detail=True, methods=["post"])
    def recover(self, request, pk=None):
        serializer = RecoverSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        count = services.subscription_recover(
            subscription=self.get_object(), since=serializer.validated_data["since"])
        return Response({"retried": count}, status=status.HTTP_202_ACCEPTED)


class DeliveryRetryView(APIView):
    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(self, request, delivery_id: str):
        delivery = get_object_or_404(
            Delivery, id=delivery_id, subscription__application=request.user)
        services.deliveries_retry([delivery.id])
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
