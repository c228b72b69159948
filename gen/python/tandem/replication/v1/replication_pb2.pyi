from tandem.link.v1 import link_pb2 as _link_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ack(_message.Message):
    __slots__ = ["applied_lsn", "flushed_lsn", "written_lsn"]
    APPLIED_LSN_FIELD_NUMBER: _ClassVar[int]
    FLUSHED_LSN_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_LSN_FIELD_NUMBER: _ClassVar[int]
    applied_lsn: int
    flushed_lsn: int
    written_lsn: int
    def __init__(self, written_lsn: _Optional[int] = ..., flushed_lsn: _Optional[int] = ..., applied_lsn: _Optional[int] = ...) -> None: ...

class ClusterUpdate(_message.Message):
    __slots__ = ["brokers", "epoch", "isr", "leader_id"]
    BROKERS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ISR_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    brokers: _containers.RepeatedCompositeFieldContainer[_link_pb2.BrokerInfo]
    epoch: int
    isr: _containers.RepeatedScalarFieldContainer[int]
    leader_id: int
    def __init__(self, leader_id: _Optional[int] = ..., epoch: _Optional[int] = ..., brokers: _Optional[_Iterable[_Union[_link_pb2.BrokerInfo, _Mapping]]] = ..., isr: _Optional[_Iterable[int]] = ...) -> None: ...

class EntriesBatch(_message.Message):
    __slots__ = ["commit_lsn", "entries"]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    commit_lsn: int
    entries: _containers.RepeatedCompositeFieldContainer[_link_pb2.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_link_pb2.Entry, _Mapping]]] = ..., commit_lsn: _Optional[int] = ...) -> None: ...

class FollowerHeartbeat(_message.Message):
    __slots__ = ["applied_lsn", "sent_unix_nanos"]
    APPLIED_LSN_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    applied_lsn: int
    sent_unix_nanos: int
    def __init__(self, sent_unix_nanos: _Optional[int] = ..., applied_lsn: _Optional[int] = ...) -> None: ...

class FollowerHello(_message.Message):
    __slots__ = ["broker", "cluster_id", "commit_checksum", "commit_lsn", "epoch_history", "first_lsn", "last_checksum", "node_id", "position", "stream_id"]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_HISTORY_FIELD_NUMBER: _ClassVar[int]
    FIRST_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    broker: _link_pb2.BrokerInfo
    cluster_id: str
    commit_checksum: int
    commit_lsn: int
    epoch_history: _containers.RepeatedCompositeFieldContainer[_link_pb2.EpochStart]
    first_lsn: int
    last_checksum: int
    node_id: int
    position: Position
    stream_id: str
    def __init__(self, cluster_id: _Optional[str] = ..., node_id: _Optional[int] = ..., stream_id: _Optional[str] = ..., position: _Optional[_Union[Position, _Mapping]] = ..., epoch_history: _Optional[_Iterable[_Union[_link_pb2.EpochStart, _Mapping]]] = ..., first_lsn: _Optional[int] = ..., broker: _Optional[_Union[_link_pb2.BrokerInfo, _Mapping]] = ..., last_checksum: _Optional[int] = ..., commit_lsn: _Optional[int] = ..., commit_checksum: _Optional[int] = ...) -> None: ...

class FollowerLeaving(_message.Message):
    __slots__ = ["reason"]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class LeaderHeartbeat(_message.Message):
    __slots__ = ["commit_lsn", "epoch", "leader_last_lsn", "sent_unix_nanos"]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    commit_lsn: int
    epoch: int
    leader_last_lsn: int
    sent_unix_nanos: int
    def __init__(self, sent_unix_nanos: _Optional[int] = ..., leader_last_lsn: _Optional[int] = ..., commit_lsn: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class LeaderHello(_message.Message):
    __slots__ = ["cluster", "cluster_id", "commit_agrees", "commit_lsn", "epoch", "epoch_history", "leader_id", "leader_last_lsn", "reset_to", "start_lsn", "truncate_to", "unclean_epoch"]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_AGREES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LSN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCH_HISTORY_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    RESET_TO_FIELD_NUMBER: _ClassVar[int]
    START_LSN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_TO_FIELD_NUMBER: _ClassVar[int]
    UNCLEAN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    cluster: ClusterUpdate
    cluster_id: str
    commit_agrees: bool
    commit_lsn: int
    epoch: int
    epoch_history: _containers.RepeatedCompositeFieldContainer[_link_pb2.EpochStart]
    leader_id: int
    leader_last_lsn: int
    reset_to: int
    start_lsn: int
    truncate_to: int
    unclean_epoch: int
    def __init__(self, leader_id: _Optional[int] = ..., epoch: _Optional[int] = ..., truncate_to: _Optional[int] = ..., reset_to: _Optional[int] = ..., start_lsn: _Optional[int] = ..., epoch_history: _Optional[_Iterable[_Union[_link_pb2.EpochStart, _Mapping]]] = ..., leader_last_lsn: _Optional[int] = ..., commit_lsn: _Optional[int] = ..., cluster: _Optional[_Union[ClusterUpdate, _Mapping]] = ..., cluster_id: _Optional[str] = ..., unclean_epoch: _Optional[int] = ..., commit_agrees: bool = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ["epoch", "lsn", "stream_id"]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    lsn: int
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ..., epoch: _Optional[int] = ..., lsn: _Optional[int] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ["ack", "heartbeat", "hello", "leaving"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    heartbeat: FollowerHeartbeat
    hello: FollowerHello
    leaving: FollowerLeaving
    def __init__(self, hello: _Optional[_Union[FollowerHello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., heartbeat: _Optional[_Union[FollowerHeartbeat, _Mapping]] = ..., leaving: _Optional[_Union[FollowerLeaving, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ["cluster", "entries", "heartbeat", "hello"]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    cluster: ClusterUpdate
    entries: EntriesBatch
    heartbeat: LeaderHeartbeat
    hello: LeaderHello
    def __init__(self, hello: _Optional[_Union[LeaderHello, _Mapping]] = ..., entries: _Optional[_Union[EntriesBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[LeaderHeartbeat, _Mapping]] = ..., cluster: _Optional[_Union[ClusterUpdate, _Mapping]] = ...) -> None: ...
