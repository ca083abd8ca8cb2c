"""The inbound door for provider receipts: the channel's provider authenticates each one."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import Channel, Receipt
from ..providers import ReceiptRefused, provider_for
from ..receipts import ANSWER_ORDER, receipt_process
from .errors import error_body
from .schema import ErrorSerializer, ReceiptAnswer

ANSWERS = {
    Receipt.Outcome.APPLIED: (status.HTTP_200_OK, "applied"),
    Receipt.Outcome.IGNORED: (status.HTTP_200_OK, "ignored: it does not change the message"),
    Receipt.Outcome.DEFERRED: (status.HTTP_202_ACCEPTED, "accepted: the attempt is not recorded yet"),
}


class ReceiptView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiResponse(ReceiptAnswer, description="applied, or ignored (a repeat, late or backwards)"),
            202: OpenApiResponse(ReceiptAnswer, description="deferred: it beat the attempt's SENT record"),
            401: OpenApiResponse(ErrorSerializer, description="The provider's signature does not verify."),
            404: OpenApiResponse(ErrorSerializer, description="No such channel, or no message of it matches."),
        },
        description="Provider receipts. No API key: the channel's provider authenticates the request "
                    "its own way (a signature header), and the body is the provider's own format.",
    )
    def post(self, request, channel_name: str):
        channel = Channel.objects.filter(name=channel_name).first()
        if channel is None:
            return Response(error_body("unknown_channel", f"No channel named {channel_name!r}."),
                            status=status.HTTP_404_NOT_FOUND)
        try:
            payloads = provider_for(channel).receipt_payloads(request)
            if not payloads:
                raise ValueError("the request carries no receipt")
            answered = [receipt_process(channel=channel, payload=payload) for payload in payloads]
        except ReceiptRefused:
            return Response(error_body("bad_signature", "The receipt's signature does not verify."),
                            status=status.HTTP_401_UNAUTHORIZED)
        except (ValueError, TypeError) as exc:  # JSON and Unicode errors are ValueErrors
            return Response(error_body("invalid_receipt", str(exc)), status=status.HTTP_400_BAD_REQUEST)
        receipt = min(answered, key=lambda r: ANSWER_ORDER.index(r.outcome))
        if receipt.outcome == Receipt.Outcome.UNKNOWN_MESSAGE:
            return Response(error_body("unknown_message", "No message of this channel matches the receipt."),
                            status=status.HTTP_404_NOT_FOUND)
        code, text = ANSWERS[receipt.outcome]
        return Response({"outcome": receipt.outcome, "message": text}, status=code)
