"""The phone numbers half of the sandbox Twilio: which numbers the account owns
(`GET …/IncomingPhoneNumbers.json?PhoneNumber=…`) and which it has as verified caller IDs
(`GET …/OutgoingCallerIds.json?PhoneNumber=…`), the two lists Twilio answers a sender check from.

The fake owns the numbers in `owned_numbers` (the sandbox service adds the platform's default
sender) and every Twilio test number, +1500555 and four digits; `caller_ids` are its verified
caller IDs. Tests add to either set. A message to one of Twilio's magic failing numbers is refused
as Twilio's test credentials refuse it (`MAGIC_TO`).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from shared.sandbox.twilio import Recorded

#: Twilio's magic test numbers (+15005550006 and its kin): owned by every sandbox account.
TEST_NUMBER = re.compile(r"\+1500555\d{4}")
#: The `To` numbers a message is refused for by Twilio's test credentials: HTTP 400, error code and
#: Twilio's message (twilio.com/docs/iam/test-credentials, "Messages" magic numbers).
MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number: +15005550002, is not currently reachable via SMS."),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +15005550003.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


class FakeNumbers:
    """Mixed into FakeTwilio, whose dataclass fields hold the state (`owned_numbers`, `caller_ids`)."""

    account_sid: str
    owned_numbers: set[str]
    caller_ids: set[str]

    if TYPE_CHECKING:

        async def _record(self, request: web.Request) -> Recorded: ...
        def _authorised(self, request: web.Request) -> bool: ...
        @staticmethod
        def _error(status: int, code: int | None, message: str) -> web.Response: ...

    def owns(self, number: str) -> bool:
        """Whether the fake account owns `number` (bought, or a test number)."""
        return number in self.owned_numbers or bool(TEST_NUMBER.fullmatch(number))

    async def _list_incoming_numbers(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        wanted = request.query.get("PhoneNumber")
        numbers = sorted(self.owned_numbers | ({wanted} if wanted and self.owns(wanted) else set()))
        found = [self._number(n, "PN") for n in numbers if wanted is None or n == wanted]
        return web.json_response(self._page(request, "incoming_phone_numbers", found))

    async def _list_caller_ids(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        wanted = request.query.get("PhoneNumber")
        found = [self._number(n, "PN") for n in sorted(self.caller_ids) if wanted is None or n == wanted]
        return web.json_response(self._page(request, "outgoing_caller_ids", found))

    def _number(self, number: str, prefix: str) -> dict[str, Any]:
        sid = prefix + uuid.uuid5(uuid.NAMESPACE_URL, number).hex
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "phone_number": number,
            "friendly_name": number,
            "capabilities": {"voice": True, "sms": True, "mms": False},
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
        }

    @staticmethod
    def _page(request: web.Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            key: items,
            "page": 0,
            "page_size": 50,
            "start": 0,
            "end": max(len(items) - 1, 0),
            "first_page_uri": request.path_qs,
            "next_page_uri": None,
            "previous_page_uri": None,
            "uri": request.path_qs,
        }
