from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")

urlpatterns = [
    path("deliveries/<str:delivery_id>/retry", views.DeliveryRetryView.as_view(), name="delivery-retry"),
    *router.urls,
]
