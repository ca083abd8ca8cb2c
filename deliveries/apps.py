from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Webhook deliveries"

    def ready(self):
        from comms import hooks

        from .fanout import fan_out

        hooks.listen(fan_out)
