from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
ENTRY_TYPE_ACL: EntryType
ENTRY_TYPE_ALTER_CONFIG: EntryType
ENTRY_TYPE_CLIENT_QUOTA: EntryType
ENTRY_TYPE_COMPACTED_BATCH: EntryType
ENTRY_TYPE_CREATE_PARTITIONS: EntryType
ENTRY_TYPE_CREATE_TOPIC: EntryType
ENTRY_TYPE_DELETE_RECORDS: EntryType
ENTRY_TYPE_DELETE_TOPIC: EntryType
ENTRY_TYPE_GROUP_STATE: EntryType
ENTRY_TYPE_NOOP: EntryType
ENTRY_TYPE_OFFSET_COMMIT: EntryType
ENTRY_TYPE_PRODUCER_ID: EntryType
ENTRY_TYPE_RECORD_BATCH: EntryType
ENTRY_TYPE_SCRAM_CREDENTIAL: EntryType
ENTRY_TYPE_STATE_SNAPSHOT: EntryType
ENTRY_TYPE_TRANSACTION: EntryType
ENTRY_TYPE_UNSPECIFIED: EntryType
REPLAY_STATUS_COMPACTED: ReplayStatus
REPLAY_STATUS_ERROR: ReplayStatus
REPLAY_STATUS_OK: ReplayStatus
REPLAY_STATUS_OUT_OF_RANGE: ReplayStatus
REPLAY_STATUS_UNSPECIFIED: ReplayStatus
ROLE_FOLLOWER: Role
ROLE_LEADER: Role
ROLE_STANDALONE: Role
ROLE_UNSPECIFIED: Role

class AppliedUpTo(_message.Message):
    __slots__ = ["commit_lsn", "epoch_history", "error", "lsn"]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_HISTORY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    commit_lsn: int
    epoch_history: _containers.RepeatedCompositeFieldContainer[EpochStart]
    error: str
    lsn: int
    def __init__(self, lsn: _Optional[int] = ..., error: _Optional[str] = ..., epoch_history: _Optional[_Iterable[_Union[EpochStart, _Mapping]]] = ..., commit_lsn: _Optional[int] = ...) -> None: ...

class ApplyEntries(_message.Message):
    __slots__ = ["commit_lsn", "entries"]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    commit_lsn: int
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., commit_lsn: _Optional[int] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ["applied", "checksum_result", "commit_applied", "committed", "hello", "replay_result", "reset_done", "stopping", "storage", "truncated"]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_RESULT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_APPLIED_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPLAY_RESULT_FIELD_NUMBER: _ClassVar[int]
    RESET_DONE_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    applied: AppliedUpTo
    checksum_result: ChecksumResult
    commit_applied: CommitApplied
    committed: CommittedEntries
    hello: BrokerHello
    replay_result: ReplayResult
    reset_done: ResetDone
    stopping: BrokerStopping
    storage: StorageState
    truncated: TruncatedTo
    def __init__(self, hello: _Optional[_Union[BrokerHello, _Mapping]] = ..., committed: _Optional[_Union[CommittedEntries, _Mapping]] = ..., replay_result: _Optional[_Union[ReplayResult, _Mapping]] = ..., applied: _Optional[_Union[AppliedUpTo, _Mapping]] = ..., truncated: _Optional[_Union[TruncatedTo, _Mapping]] = ..., reset_done: _Optional[_Union[ResetDone, _Mapping]] = ..., checksum_result: _Optional[_Union[ChecksumResult, _Mapping]] = ..., commit_applied: _Optional[_Union[CommitApplied, _Mapping]] = ..., storage: _Optional[_Union[StorageState, _Mapping]] = ..., stopping: _Optional[_Union[BrokerStopping, _Mapping]] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ["apply", "checksum", "cluster_view", "commit", "heartbeat", "replay", "reset_to", "subscribe", "truncate_to"]
    APPLY_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_VIEW_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    RESET_TO_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_TO_FIELD_NUMBER: _ClassVar[int]
    apply: ApplyEntries
    checksum: ChecksumRequest
    cluster_view: ClusterView
    commit: CommitPoint
    heartbeat: LinkHeartbeat
    replay: ReplayRequest
    reset_to: ResetTo
    subscribe: SubscribeCommitted
    truncate_to: TruncateTo
    def __init__(self, cluster_view: _Optional[_Union[ClusterView, _Mapping]] = ..., replay: _Optional[_Union[ReplayRequest, _Mapping]] = ..., apply: _Optional[_Union[ApplyEntries, _Mapping]] = ..., truncate_to: _Optional[_Union[TruncateTo, _Mapping]] = ..., reset_to: _Optional[_Union[ResetTo, _Mapping]] = ..., commit: _Optional[_Union[CommitPoint, _Mapping]] = ..., subscribe: _Optional[_Union[SubscribeCommitted, _Mapping]] = ..., checksum: _Optional[_Union[ChecksumRequest, _Mapping]] = ..., heartbeat: _Optional[_Union[LinkHeartbeat, _Mapping]] = ...) -> None: ...

class BrokerHello(_message.Message):
    __slots__ = ["advertised_host", "advertised_port", "apply_carries_commit", "cluster_id", "commit_lsn", "durable_lsn", "epoch_history", "first_lsn", "last_lsn", "node_id", "rack", "reads_handing_over", "reads_heartbeats"]
    ADVERTISED_HOST_FIELD_NUMBER: _ClassVar[int]
    ADVERTISED_PORT_FIELD_NUMBER: _ClassVar[int]
    APPLY_CARRIES_COMMIT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    DURABLE_LSN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_HISTORY_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    READS_HANDING_OVER_FIELD_NUMBER: _ClassVar[int]
    READS_HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    advertised_host: str
    advertised_port: int
    apply_carries_commit: bool
    cluster_id: str
    commit_lsn: int
    durable_lsn: int
    epoch_history: _containers.RepeatedCompositeFieldContainer[EpochStart]
    first_lsn: int
    last_lsn: int
    node_id: int
    rack: str
    reads_handing_over: bool
    reads_heartbeats: bool
    def __init__(self, node_id: _Optional[int] = ..., advertised_host: _Optional[str] = ..., advertised_port: _Optional[int] = ..., rack: _Optional[str] = ..., first_lsn: _Optional[int] = ..., last_lsn: _Optional[int] = ..., durable_lsn: _Optional[int] = ..., epoch_history: _Optional[_Iterable[_Union[EpochStart, _Mapping]]] = ..., apply_carries_commit: bool = ..., commit_lsn: _Optional[int] = ..., reads_handing_over: bool = ..., reads_heartbeats: bool = ..., cluster_id: _Optional[str] = ...) -> None: ...

class BrokerInfo(_message.Message):
    __slots__ = ["host", "node_id", "port", "rack"]
    HOST_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    host: str
    node_id: int
    port: int
    rack: str
    def __init__(self, node_id: _Optional[int] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., rack: _Optional[str] = ...) -> None: ...

class BrokerStopping(_message.Message):
    __slots__ = ["last_lsn", "reason"]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    last_lsn: int
    reason: str
    def __init__(self, reason: _Optional[str] = ..., last_lsn: _Optional[int] = ...) -> None: ...

class ChecksumRequest(_message.Message):
    __slots__ = ["from_lsn", "request_id", "to_lsn"]
    FROM_LSN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TO_LSN_FIELD_NUMBER: _ClassVar[int]
    from_lsn: int
    request_id: int
    to_lsn: int
    def __init__(self, request_id: _Optional[int] = ..., from_lsn: _Optional[int] = ..., to_lsn: _Optional[int] = ...) -> None: ...

class ChecksumResult(_message.Message):
    __slots__ = ["checksum", "commit_lsn", "error", "first_lsn", "last_lsn", "request_id"]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    checksum: int
    commit_lsn: int
    error: str
    first_lsn: int
    last_lsn: int
    request_id: int
    def __init__(self, request_id: _Optional[int] = ..., checksum: _Optional[int] = ..., error: _Optional[str] = ..., first_lsn: _Optional[int] = ..., last_lsn: _Optional[int] = ..., commit_lsn: _Optional[int] = ...) -> None: ...

class ClusterView(_message.Message):
    __slots__ = ["brokers", "cluster_id", "epoch", "fence_after_ms", "handing_over", "heartbeat_interval_ms", "isr", "leader_id", "reads_broker_stopping", "reads_storage_state", "role"]
    BROKERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FENCE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    HANDING_OVER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    ISR_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    READS_BROKER_STOPPING_FIELD_NUMBER: _ClassVar[int]
    READS_STORAGE_STATE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    brokers: _containers.RepeatedCompositeFieldContainer[BrokerInfo]
    cluster_id: str
    epoch: int
    fence_after_ms: int
    handing_over: bool
    heartbeat_interval_ms: int
    isr: _containers.RepeatedScalarFieldContainer[int]
    leader_id: int
    reads_broker_stopping: bool
    reads_storage_state: bool
    role: Role
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., leader_id: _Optional[int] = ..., epoch: _Optional[int] = ..., brokers: _Optional[_Iterable[_Union[BrokerInfo, _Mapping]]] = ..., isr: _Optional[_Iterable[int]] = ..., reads_storage_state: bool = ..., reads_broker_stopping: bool = ..., handing_over: bool = ..., fence_after_ms: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class CommitApplied(_message.Message):
    __slots__ = ["lsn"]
    LSN_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    def __init__(self, lsn: _Optional[int] = ...) -> None: ...

class CommitPoint(_message.Message):
    __slots__ = ["lsn"]
    LSN_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    def __init__(self, lsn: _Optional[int] = ...) -> None: ...

class CommittedEntries(_message.Message):
    __slots__ = ["durable_lsn", "entries"]
    DURABLE_LSN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    durable_lsn: int
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., durable_lsn: _Optional[int] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ["epoch", "lsn", "payload", "payload_crc32c", "type"]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_CRC32C_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    lsn: int
    payload: bytes
    payload_crc32c: int
    type: EntryType
    def __init__(self, lsn: _Optional[int] = ..., epoch: _Optional[int] = ..., type: _Optional[_Union[EntryType, str]] = ..., payload: _Optional[bytes] = ..., payload_crc32c: _Optional[int] = ...) -> None: ...

class EpochStart(_message.Message):
    __slots__ = ["epoch", "start_lsn"]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    START_LSN_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    start_lsn: int
    def __init__(self, epoch: _Optional[int] = ..., start_lsn: _Optional[int] = ...) -> None: ...

class LinkHeartbeat(_message.Message):
    __slots__ = ["epoch", "fresh_until_unix_ms"]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FRESH_UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    fresh_until_unix_ms: int
    def __init__(self, epoch: _Optional[int] = ..., fresh_until_unix_ms: _Optional[int] = ...) -> None: ...

class ReplayRequest(_message.Message):
    __slots__ = ["from_lsn", "max_bytes", "request_id"]
    FROM_LSN_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    from_lsn: int
    max_bytes: int
    request_id: int
    def __init__(self, request_id: _Optional[int] = ..., from_lsn: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ReplayResult(_message.Message):
    __slots__ = ["done", "durable_lsn", "end_of_log", "entries", "error", "first_lsn", "request_id", "status"]
    DONE_FIELD_NUMBER: _ClassVar[int]
    DURABLE_LSN_FIELD_NUMBER: _ClassVar[int]
    END_OF_LOG_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    done: bool
    durable_lsn: int
    end_of_log: bool
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    error: str
    first_lsn: int
    request_id: int
    status: ReplayStatus
    def __init__(self, request_id: _Optional[int] = ..., status: _Optional[_Union[ReplayStatus, str]] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., done: bool = ..., end_of_log: bool = ..., first_lsn: _Optional[int] = ..., durable_lsn: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ResetDone(_message.Message):
    __slots__ = ["error", "next_lsn"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_LSN_FIELD_NUMBER: _ClassVar[int]
    error: str
    next_lsn: int
    def __init__(self, next_lsn: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ResetTo(_message.Message):
    __slots__ = ["next_lsn"]
    NEXT_LSN_FIELD_NUMBER: _ClassVar[int]
    next_lsn: int
    def __init__(self, next_lsn: _Optional[int] = ...) -> None: ...

class StorageState(_message.Message):
    __slots__ = ["error", "failing_since_unix_ms", "first_lsn"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILING_SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    error: str
    failing_since_unix_ms: int
    first_lsn: int
    def __init__(self, error: _Optional[str] = ..., failing_since_unix_ms: _Optional[int] = ..., first_lsn: _Optional[int] = ...) -> None: ...

class SubscribeCommitted(_message.Message):
    __slots__ = ["from_lsn"]
    FROM_LSN_FIELD_NUMBER: _ClassVar[int]
    from_lsn: int
    def __init__(self, from_lsn: _Optional[int] = ...) -> None: ...

class TruncateTo(_message.Message):
    __slots__ = ["lsn"]
    LSN_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    def __init__(self, lsn: _Optional[int] = ...) -> None: ...

class TruncatedTo(_message.Message):
    __slots__ = ["epoch_history", "error", "last_lsn"]
    EPOCH_HISTORY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    epoch_history: _containers.RepeatedCompositeFieldContainer[EpochStart]
    error: str
    last_lsn: int
    def __init__(self, last_lsn: _Optional[int] = ..., epoch_history: _Optional[_Iterable[_Union[EpochStart, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReplayStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
