from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views
from .receipts import ReceiptView

router = SimpleRouter(trailing_slash=False)
router.register("channels", views.ChannelViewSet, basename="channel")

urlpatterns = [
    path("messages", views.MessageListCreateView.as_view(), name="message-list"),
    path("messages/batch", views.MessageBatchView.as_view(), name="message-batch"),
    path("messages/<str:message_id>", views.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<str:message_id>/cancel", views.MessageCancelView.as_view(), name="message-cancel"),
    path("receipts/<str:channel_name>", ReceiptView.as_view(), name="receipt"),
    *router.urls,
]
