from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from comms.api.errors import api_not_found
from console.views import console

from .health import healthz
from .metrics import metrics_view

urlpatterns = [
    path("admin/console/", admin.site.admin_view(console), name="console"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("comms.api.urls")),
    path("api/v1/", include("deliveries.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    re_path(r"^api/", api_not_found),  # last: only what no endpoint above matched
]
