import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from podium.v1 import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "status", "load")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    status: StatusReport
    load: LoadReport
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., status: _Optional[_Union[StatusReport, _Mapping]] = ..., load: _Optional[_Union[LoadReport, _Mapping]] = ...) -> None: ...

class TaskLoad(_message.Message):
    __slots__ = ("task_id", "cpu_cores", "memory_bytes", "memory_share")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SHARE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    cpu_cores: float
    memory_bytes: int
    memory_share: float
    def __init__(self, task_id: _Optional[str] = ..., cpu_cores: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., memory_share: _Optional[float] = ...) -> None: ...

class NodeLoad(_message.Message):
    __slots__ = ("cpu_cores_used", "cpu_cores_total", "memory_used_bytes", "memory_total_bytes", "task_count")
    CPU_CORES_USED_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    cpu_cores_used: float
    cpu_cores_total: float
    memory_used_bytes: int
    memory_total_bytes: int
    task_count: int
    def __init__(self, cpu_cores_used: _Optional[float] = ..., cpu_cores_total: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., task_count: _Optional[int] = ...) -> None: ...

class LoadReport(_message.Message):
    __slots__ = ("time", "node", "tasks", "summary")
    TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    node: NodeLoad
    tasks: _containers.RepeatedCompositeFieldContainer[TaskLoad]
    summary: bool
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[_Union[NodeLoad, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskLoad, _Mapping]]] = ..., summary: _Optional[bool] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("node_id", "description")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    description: _objects_pb2.NodeDescription
    def __init__(self, node_id: _Optional[str] = ..., description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReport(_message.Message):
    __slots__ = ("updates",)
    class Update(_message.Message):
        __slots__ = ("task_id", "status")
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        task_id: str
        status: _objects_pb2.TaskStatus
        def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.TaskStatus, _Mapping]] = ...) -> None: ...
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[StatusReport.Update]
    def __init__(self, updates: _Optional[_Iterable[_Union[StatusReport.Update, _Mapping]]] = ...) -> None: ...

class ManagerMessage(_message.Message):
    __slots__ = ("session", "assignments")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    assignments: Assignments
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ..., assignments: _Optional[_Union[Assignments, _Mapping]] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("node_id", "heartbeat_period", "load_period")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    LOAD_PERIOD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    heartbeat_period: _duration_pb2.Duration
    load_period: _duration_pb2.Duration
    def __init__(self, node_id: _Optional[str] = ..., heartbeat_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., load_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Assignments(_message.Message):
    __slots__ = ("type", "tasks", "removed")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_COMPLETE: _ClassVar[Assignments.Type]
        TYPE_INCREMENTAL: _ClassVar[Assignments.Type]
    TYPE_COMPLETE: Assignments.Type
    TYPE_INCREMENTAL: Assignments.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    type: Assignments.Type
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[_Union[Assignments.Type, str]] = ..., tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...
