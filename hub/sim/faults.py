"""The platform's fault catalogue (docs/contract.md) and the SOAP 1.1 Fault it answers with.

Format as SKLTP VP writes it: HTTP 500, ``faultcode`` ``soap:Client`` or ``soap:Server``,
``faultstring`` = ``"VPnnn [<instance id>] <Swedish text>"``, ``detail/detailString`` = English
detail. The Swedish texts follow SKLTP VP's message catalogue as closely as we can reconstruct it;
VP015 is newer than the catalogue we could read and is our own wording in the same style.
Consumers must key on the ``VPnnn`` code, never on the text.
"""

from __future__ import annotations

import enum
from typing import Final
from xml.sax.saxutils import escape

from hub.contract.names import SOAP11_ENV_NS

CONTENT_TYPE_XML: Final = "text/xml; charset=UTF-8"


class VpCode(enum.Enum):
    """The VP faults the simulator produces: value = (faultcode local part, Swedish text)."""

    VP002 = (
        "Client",
        "Fel i klientcertifikat. Saknas, är av felaktig typ, eller är felaktigt utformad.",
    )
    VP003 = ("Client", "Logisk adressat (ReceiverId) saknas i RivHeadern i inkommande meddelande.")
    VP004 = (
        "Client",
        "Det finns inget vägval i tjänsteadresseringskatalogen som matchar anropets logiska "
        "adressat (ReceiverId) och tjänstekontrakt. Kontrollera uppgifterna i anropet och vid "
        "behov, beställ konfigurering i aktuell tjänsteplattform.",
    )
    VP006 = (
        "Server",
        "Internt fel i tjänsteplattformen. Det finns fler än en tjänsteproducent definierad i "
        "tjänsteadresseringskatalogen som matchar logisk adressat (ReceiverId), tjänstekontrakt "
        "och dagens datum. Tyder på felkonfiguration. Rapportera felet till "
        "tjänsteplattformsförvaltningen.",
    )
    VP007 = (
        "Server",
        "Tjänstekonsumenten saknar behörighet att anropa den logiska adressaten via detta "
        "tjänstekontrakt. Kontrollera uppgifterna och vid behov, tillse att det beställs "
        "konfiguration i aktuell tjänsteplattform.",
    )
    VP009 = ("Server", "Fel vid kontakt med tjänsteproducenten.")
    # SKLTP's own Swedish VP011 text speaks of calls outside TLS although the check (and its English
    # detail) is the IP allow-list; we say what the check is, in the same register.
    VP011 = (
        "Client",
        "Anropet kommer från en IP-adress som inte finns i tjänsteplattformens lista över "
        "tillåtna adresser. Kontakta tjänsteplattformsförvaltningen.",
    )
    VP013 = (
        "Client",
        "Enligt tjänsteplattformens konfiguration saknar tjänstekonsumenten rätt att använda "
        "headern x-rivta-original-serviceconsumer-hsaid. Kontakta tjänsteplattformsförvaltningen.",
    )
    VP014 = (
        "Server",
        "Anropsförmedlingen för den logiska adressaten har givit upphov till rundgång mellan "
        "tjänsteplattformar. Rapportera felet till tjänsteplattformsförvaltningen.",
    )
    VP015 = (
        "Client",
        "Meddelandet kunde inte tolkas. Det är inte välformad XML eller saknar SOAP-kropp. "
        "Kontrollera anropets innehåll.",
    )

    @property
    def faultcode(self) -> str:
        """``soap:Client`` or ``soap:Server``."""
        return f"soap:{self.value[0]}"

    @property
    def swedish(self) -> str:
        """The Swedish text that follows ``VPnnn [instance]`` in the faultstring."""
        return self.value[1]


class VpFault(Exception):
    """A platform fault to answer with; raised inside the router, rendered by :func:`fault_body`."""

    def __init__(self, code: VpCode, detail: str) -> None:
        super().__init__(code.name, detail)
        self.code = code
        self.detail = detail

    def faultstring(self, instance_id: str) -> str:
        """Return ``"VPnnn [instance] Swedish text"`` exactly as the platform formats it."""
        return f"{self.code.name} [{instance_id}] {self.code.swedish}"


def soap_fault(faultcode: str, faultstring: str, detail: str | None = None) -> bytes:
    """Return a SOAP 1.1 envelope with one Fault (prefix ``soap``: ``soap:Server`` is literal)."""
    detail_xml = f"<detail><detailString>{escape(detail)}</detailString></detail>" if detail else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP11_ENV_NS}"><soap:Header/><soap:Body>'
        f"<soap:Fault><faultcode>{escape(faultcode)}</faultcode>"
        f"<faultstring>{escape(faultstring)}</faultstring>{detail_xml}</soap:Fault>"
        f"</soap:Body></soap:Envelope>"
    ).encode()


def fault_body(fault: VpFault, instance_id: str) -> bytes:
    """Return the envelope the platform answers ``fault`` with (sent with HTTP 500)."""
    return soap_fault(fault.code.faultcode, fault.faultstring(instance_id), fault.detail)


__all__ = ["CONTENT_TYPE_XML", "VpCode", "VpFault", "fault_body", "soap_fault"]
