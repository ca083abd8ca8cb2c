from rest_framework.permissions import BasePermission

from ..models import Application


class IsApplication(BasePermission):
    message = "Authenticate with an API key."

    def has_permission(self, request, view):
        return isinstance(request.user, Application)


class IsAdminApplication(IsApplication):
    message = "Only admin applications may manage channels."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.is_admin
