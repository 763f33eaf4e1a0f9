"""sriov-ep gateware: SR-IOV endpoint logic in Amaranth 0.5."""

from .caps.sriov import SriovCapability
from .decode.routing import RoutingIdDecoder, Target
from .endpoint import CONFIG_LATENCY, VF_BME_LATENCY, SriovEndpoint
from .params import Bar, EndpointParams, ParamError, load_params
from .tlp import SriovTlpEndpoint as SriovTlpEndpoint

__all__ = ["Bar", "EndpointParams", "ParamError", "load_params", "SriovCapability",
           "RoutingIdDecoder", "Target", "SriovEndpoint", "CONFIG_LATENCY", "VF_BME_LATENCY"]
