# GENERATED FILE, DO NOT EDIT: made by `python -m vp.proto.gen_proto` from npuvp.proto
# grpcio-tools 1.85.1
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("board_name", "device_id", "version_major", "version_minor", "version_patch", "features", "bar_size", "hbm_base", "hbm_size", "link_latency_ps", "link_bytes_per_s", "now_ps", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BOARD_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_MAJOR_FIELD_NUMBER: _ClassVar[int]
    VERSION_MINOR_FIELD_NUMBER: _ClassVar[int]
    VERSION_PATCH_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    HBM_BASE_FIELD_NUMBER: _ClassVar[int]
    HBM_SIZE_FIELD_NUMBER: _ClassVar[int]
    LINK_LATENCY_PS_FIELD_NUMBER: _ClassVar[int]
    LINK_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    board_name: str
    device_id: int
    version_major: int
    version_minor: int
    version_patch: int
    features: int
    bar_size: int
    hbm_base: int
    hbm_size: int
    link_latency_ps: int
    link_bytes_per_s: int
    now_ps: int
    extra: _containers.ScalarMap[str, str]
    def __init__(self, board_name: _Optional[str] = ..., device_id: _Optional[int] = ..., version_major: _Optional[int] = ..., version_minor: _Optional[int] = ..., version_patch: _Optional[int] = ..., features: _Optional[int] = ..., bar_size: _Optional[int] = ..., hbm_base: _Optional[int] = ..., hbm_size: _Optional[int] = ..., link_latency_ps: _Optional[int] = ..., link_bytes_per_s: _Optional[int] = ..., now_ps: _Optional[int] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegBatchRequest(_message.Message):
    __slots__ = ("write", "address", "value")
    WRITE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    write: _containers.RepeatedScalarFieldContainer[bool]
    address: _containers.RepeatedScalarFieldContainer[int]
    value: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, write: _Optional[_Iterable[bool]] = ..., address: _Optional[_Iterable[int]] = ..., value: _Optional[_Iterable[int]] = ...) -> None: ...

class RegBatchReply(_message.Message):
    __slots__ = ("status", "value", "now_ps")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    status: _containers.RepeatedScalarFieldContainer[int]
    value: _containers.RepeatedScalarFieldContainer[int]
    now_ps: int
    def __init__(self, status: _Optional[_Iterable[int]] = ..., value: _Optional[_Iterable[int]] = ..., now_ps: _Optional[int] = ...) -> None: ...

class WriteMemRequest(_message.Message):
    __slots__ = ("address", "total_bytes", "data")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    address: int
    total_bytes: int
    data: bytes
    def __init__(self, address: _Optional[int] = ..., total_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class WriteMemReply(_message.Message):
    __slots__ = ("now_ps",)
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    now_ps: int
    def __init__(self, now_ps: _Optional[int] = ...) -> None: ...

class ReadMemRequest(_message.Message):
    __slots__ = ("address", "nbytes")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    address: int
    nbytes: int
    def __init__(self, address: _Optional[int] = ..., nbytes: _Optional[int] = ...) -> None: ...

class ReadMemChunk(_message.Message):
    __slots__ = ("data", "now_ps")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    now_ps: int
    def __init__(self, data: _Optional[bytes] = ..., now_ps: _Optional[int] = ...) -> None: ...

class WaitIrqRequest(_message.Message):
    __slots__ = ("mask", "timeout_ps")
    MASK_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_PS_FIELD_NUMBER: _ClassVar[int]
    mask: int
    timeout_ps: int
    def __init__(self, mask: _Optional[int] = ..., timeout_ps: _Optional[int] = ...) -> None: ...

class WaitIrqReply(_message.Message):
    __slots__ = ("pending", "now_ps")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    pending: int
    now_ps: int
    def __init__(self, pending: _Optional[int] = ..., now_ps: _Optional[int] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResetReply(_message.Message):
    __slots__ = ("now_ps",)
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    now_ps: int
    def __init__(self, now_ps: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stats(_message.Message):
    __slots__ = ("now_ps", "elapsed_ps", "units", "kinds", "energy_pj")
    class UnitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Counters
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Counters, _Mapping]] = ...) -> None: ...
    class KindsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: KindSummary
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[KindSummary, _Mapping]] = ...) -> None: ...
    class EnergyPjEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_PS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PJ_FIELD_NUMBER: _ClassVar[int]
    now_ps: int
    elapsed_ps: int
    units: _containers.MessageMap[str, Counters]
    kinds: _containers.MessageMap[str, KindSummary]
    energy_pj: _containers.ScalarMap[str, float]
    def __init__(self, now_ps: _Optional[int] = ..., elapsed_ps: _Optional[int] = ..., units: _Optional[_Mapping[str, Counters]] = ..., kinds: _Optional[_Mapping[str, KindSummary]] = ..., energy_pj: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Counters(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, int]
    def __init__(self, values: _Optional[_Mapping[str, int]] = ...) -> None: ...

class KindSummary(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ShmSegment(_message.Message):
    __slots__ = ("name", "bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    bytes: int
    def __init__(self, name: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class AttachShmReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShmTransfer(_message.Message):
    __slots__ = ("name", "address", "nbytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: int
    nbytes: int
    def __init__(self, name: _Optional[str] = ..., address: _Optional[int] = ..., nbytes: _Optional[int] = ...) -> None: ...

class ReadShmReply(_message.Message):
    __slots__ = ("now_ps",)
    NOW_PS_FIELD_NUMBER: _ClassVar[int]
    now_ps: int
    def __init__(self, now_ps: _Optional[int] = ...) -> None: ...
