from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
REPLICA_STATE_CATCHUP: ReplicaState
REPLICA_STATE_DISCONNECTED: ReplicaState
REPLICA_STATE_STREAMING: ReplicaState
REPLICA_STATE_UNSPECIFIED: ReplicaState
ROLE_FOLLOWER: Role
ROLE_LEADER: Role
ROLE_STANDALONE: Role
ROLE_UNSPECIFIED: Role

class ChecksumRequest(_message.Message):
    __slots__ = ["from_lsn", "to_lsn"]
    FROM_LSN_FIELD_NUMBER: _ClassVar[int]
    TO_LSN_FIELD_NUMBER: _ClassVar[int]
    from_lsn: int
    to_lsn: int
    def __init__(self, from_lsn: _Optional[int] = ..., to_lsn: _Optional[int] = ...) -> None: ...

class ChecksumResponse(_message.Message):
    __slots__ = ["checksum", "first_lsn", "from_lsn", "last_lsn", "node_id", "to_lsn"]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    FROM_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_LSN_FIELD_NUMBER: _ClassVar[int]
    checksum: int
    first_lsn: int
    from_lsn: int
    last_lsn: int
    node_id: int
    to_lsn: int
    def __init__(self, node_id: _Optional[int] = ..., from_lsn: _Optional[int] = ..., to_lsn: _Optional[int] = ..., checksum: _Optional[int] = ..., first_lsn: _Optional[int] = ..., last_lsn: _Optional[int] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ["address", "node_id"]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    address: str
    node_id: int
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ["force"]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: bool = ...) -> None: ...

class PromoteResponse(_message.Message):
    __slots__ = ["epoch", "leader_id"]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    leader_id: int
    def __init__(self, leader_id: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ["address", "applied_lsn", "apply_lag_seconds", "connected", "flushed_lsn", "in_isr", "kafka_address", "lag_bytes", "lag_entries", "lag_seconds", "last_caught_up", "last_heartbeat", "node_id", "sent_lsn", "state", "written_lsn"]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_LSN_FIELD_NUMBER: _ClassVar[int]
    APPLY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    FLUSHED_LSN_FIELD_NUMBER: _ClassVar[int]
    IN_ISR_FIELD_NUMBER: _ClassVar[int]
    KAFKA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAG_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_LSN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_LSN_FIELD_NUMBER: _ClassVar[int]
    address: str
    applied_lsn: int
    apply_lag_seconds: float
    connected: bool
    flushed_lsn: int
    in_isr: bool
    kafka_address: str
    lag_bytes: int
    lag_entries: int
    lag_seconds: float
    last_caught_up: _timestamp_pb2.Timestamp
    last_heartbeat: _timestamp_pb2.Timestamp
    node_id: int
    sent_lsn: int
    state: ReplicaState
    written_lsn: int
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ..., connected: bool = ..., sent_lsn: _Optional[int] = ..., written_lsn: _Optional[int] = ..., flushed_lsn: _Optional[int] = ..., applied_lsn: _Optional[int] = ..., lag_entries: _Optional[int] = ..., lag_bytes: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., in_isr: bool = ..., last_heartbeat: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_caught_up: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., kafka_address: _Optional[str] = ..., apply_lag_seconds: _Optional[float] = ..., state: _Optional[_Union[ReplicaState, str]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ["cluster_id", "commit_lsn", "durable_lsn", "epoch", "failover_mode", "first_lsn", "isr", "last_heard_from_leader", "last_lsn", "leader_id", "linked", "node_id", "not_ready_reason", "peers", "ready", "replicas", "role", "storage_error", "storage_failing_since", "streaming", "unclean_promotions", "wal_last_epoch"]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    DURABLE_LSN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_MODE_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    ISR_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_FROM_LEADER_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LINKED_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_READY_REASON_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ERROR_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FAILING_SINCE_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    UNCLEAN_PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    WAL_LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    commit_lsn: int
    durable_lsn: int
    epoch: int
    failover_mode: str
    first_lsn: int
    isr: _containers.RepeatedScalarFieldContainer[int]
    last_heard_from_leader: _timestamp_pb2.Timestamp
    last_lsn: int
    leader_id: int
    linked: bool
    node_id: int
    not_ready_reason: str
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    ready: bool
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    role: Role
    storage_error: str
    storage_failing_since: _timestamp_pb2.Timestamp
    streaming: bool
    unclean_promotions: int
    wal_last_epoch: int
    def __init__(self, node_id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., epoch: _Optional[int] = ..., leader_id: _Optional[int] = ..., first_lsn: _Optional[int] = ..., last_lsn: _Optional[int] = ..., durable_lsn: _Optional[int] = ..., commit_lsn: _Optional[int] = ..., linked: bool = ..., ready: bool = ..., streaming: bool = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., isr: _Optional[_Iterable[int]] = ..., not_ready_reason: _Optional[str] = ..., unclean_promotions: _Optional[int] = ..., failover_mode: _Optional[str] = ..., wal_last_epoch: _Optional[int] = ..., last_heard_from_leader: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., storage_error: _Optional[str] = ..., storage_failing_since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReplicaState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
