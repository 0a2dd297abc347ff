"""Names and namespaces of ProcessCervixScreeningInformation (docs/contract.md)."""

from typing import Final

CORE_NS: Final = "urn:riv:clinicalprocess:logistics:cervixscreening:1"
RESPONDER_NS: Final = (
    "urn:riv:clinicalprocess:logistics:cervixscreening:ProcessCervixScreeningInformationResponder:1"
)
WSDL_NS: Final = (
    "urn:riv:clinicalprocess:logistics:cervixscreening:"
    "ProcessCervixScreeningInformation:1:rivtabp21"
)
ITR_NS: Final = "urn:riv:itintegration:registry:1"
SOAP11_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ACTION: Final = f"{RESPONDER_NS}:ProcessCervixScreeningInformation"
ENDPOINT_PATH: Final = (
    "/clinicalprocess/logistics/cervixscreening/ProcessCervixScreeningInformation/1/rivtabp21"
)
OPERATION: Final = "ProcessCervixScreeningInformation"
#: The operation element, the first child of soap:Body.
OPERATION_TAG: Final = f"{{{RESPONDER_NS}}}{OPERATION}"
#: The operation's answer element.
RESPONSE_TAG: Final = f"{{{RESPONDER_NS}}}ProcessCervixScreeningInformationResponse"
# The one argument of the operation: the element the hub stores, validates and delivers.
PAYLOAD_TAG: Final = f"{{{RESPONDER_NS}}}cervixScreeningInformation"

PERSON_ID_ROOT: Final = "1.2.752.129.2.1.3.1"
HSA_ID_ROOT: Final = "1.2.752.129.2.1.4.1"
SNOMED_CT: Final = "1.2.752.116.2.1.1"

# Payload cap per call (docs/contract.md).
MAX_PAYLOAD_BYTES: Final = 5 * 1024 * 1024

# Headers the national platform sets or reads (docs/contract.md).
HDR_ORIGINAL_CONSUMER: Final = "x-rivta-original-serviceconsumer-hsaid"
HDR_CORRELATION_ID: Final = "x-skltp-correlation-id"
HDR_PRT: Final = "x-skltp-prt"
