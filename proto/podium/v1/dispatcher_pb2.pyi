import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from podium.v1 import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "status")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    status: StatusReport
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., status: _Optional[_Union[StatusReport, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("node_id", "heartbeat_period")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    heartbeat_period: _duration_pb2.Duration
    def __init__(self, node_id: _Optional[str] = ..., heartbeat_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

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
