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

class JoinRequest(_message.Message):
    __slots__ = ("token", "node_id", "csr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    token: str
    node_id: str
    csr: bytes
    def __init__(self, token: _Optional[str] = ..., node_id: _Optional[str] = ..., csr: _Optional[bytes] = ...) -> None: ...

class RenewCertificateRequest(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class NodeCertificate(_message.Message):
    __slots__ = ("certificate", "ca")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    ca: bytes
    def __init__(self, certificate: _Optional[bytes] = ..., ca: _Optional[bytes] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "status", "load", "leaving", "logs")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    status: StatusReport
    load: LoadReport
    leaving: Leaving
    logs: LogChunk
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., status: _Optional[_Union[StatusReport, _Mapping]] = ..., load: _Optional[_Union[LoadReport, _Mapping]] = ..., leaving: _Optional[_Union[Leaving, _Mapping]] = ..., logs: _Optional[_Union[LogChunk, _Mapping]] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "task_id", "lines", "end", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    task_id: str
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    end: bool
    error: str
    def __init__(self, request_id: _Optional[int] = ..., task_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., end: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("timestamp", "stream", "text")
    class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STREAM_STDOUT: _ClassVar[LogLine.Stream]
        STREAM_STDERR: _ClassVar[LogLine.Stream]
    STREAM_STDOUT: LogLine.Stream
    STREAM_STDERR: LogLine.Stream
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    stream: LogLine.Stream
    text: bytes
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[_Union[LogLine.Stream, str]] = ..., text: _Optional[bytes] = ...) -> None: ...

class Leaving(_message.Message):
    __slots__ = ("restarting", "reason")
    RESTARTING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    restarting: bool
    reason: str
    def __init__(self, restarting: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("time", "node", "tasks", "summary", "connections", "requests", "mesh_uncounted")
    class ConnectionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RequestsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MESH_UNCOUNTED_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    node: NodeLoad
    tasks: _containers.RepeatedCompositeFieldContainer[TaskLoad]
    summary: bool
    connections: _containers.ScalarMap[str, int]
    requests: _containers.ScalarMap[str, int]
    mesh_uncounted: bool
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[_Union[NodeLoad, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskLoad, _Mapping]]] = ..., summary: _Optional[bool] = ..., connections: _Optional[_Mapping[str, int]] = ..., requests: _Optional[_Mapping[str, int]] = ..., mesh_uncounted: _Optional[bool] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("node_id", "description")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    description: _objects_pb2.NodeDescription
    def __init__(self, node_id: _Optional[str] = ..., description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("engine_unresponsive", "engine_error")
    ENGINE_UNRESPONSIVE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ERROR_FIELD_NUMBER: _ClassVar[int]
    engine_unresponsive: bool
    engine_error: str
    def __init__(self, engine_unresponsive: _Optional[bool] = ..., engine_error: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("session", "assignments", "endpoints", "logs", "logs_cancel")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    LOGS_CANCEL_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    assignments: Assignments
    endpoints: Endpoints
    logs: LogRequest
    logs_cancel: LogCancel
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ..., assignments: _Optional[_Union[Assignments, _Mapping]] = ..., endpoints: _Optional[_Union[Endpoints, _Mapping]] = ..., logs: _Optional[_Union[LogRequest, _Mapping]] = ..., logs_cancel: _Optional[_Union[LogCancel, _Mapping]] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("request_id", "task_ids", "follow", "since", "tail")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    follow: bool
    since: _timestamp_pb2.Timestamp
    tail: int
    def __init__(self, request_id: _Optional[int] = ..., task_ids: _Optional[_Iterable[str]] = ..., follow: _Optional[bool] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tail: _Optional[int] = ...) -> None: ...

class LogCancel(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("task_id", "node_id", "addr", "ports", "container_addr", "relay_port")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ADDR_FIELD_NUMBER: _ClassVar[int]
    RELAY_PORT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    node_id: str
    addr: str
    ports: _containers.RepeatedCompositeFieldContainer[_objects_pb2.PortBinding]
    container_addr: str
    relay_port: int
    def __init__(self, task_id: _Optional[str] = ..., node_id: _Optional[str] = ..., addr: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[_objects_pb2.PortBinding, _Mapping]]] = ..., container_addr: _Optional[str] = ..., relay_port: _Optional[int] = ...) -> None: ...

class ServiceEndpoints(_message.Message):
    __slots__ = ("service_id", "service_name", "ports", "routing", "endpoints", "virtual_ip", "networks", "internal_ports")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IP_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_PORTS_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    service_name: str
    ports: _containers.RepeatedCompositeFieldContainer[_objects_pb2.PortConfig]
    routing: _objects_pb2.Routing
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    virtual_ip: str
    networks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.NetworkAttachment]
    internal_ports: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, service_id: _Optional[str] = ..., service_name: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[_objects_pb2.PortConfig, _Mapping]]] = ..., routing: _Optional[_Union[_objects_pb2.Routing, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., virtual_ip: _Optional[str] = ..., networks: _Optional[_Iterable[_Union[_objects_pb2.NetworkAttachment, _Mapping]]] = ..., internal_ports: _Optional[_Iterable[int]] = ...) -> None: ...

class Endpoints(_message.Message):
    __slots__ = ("complete", "services", "removed")
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    complete: bool
    services: _containers.RepeatedCompositeFieldContainer[ServiceEndpoints]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, complete: _Optional[bool] = ..., services: _Optional[_Iterable[_Union[ServiceEndpoints, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("node_id", "heartbeat_period", "load_period", "restart_grace", "resolver_addr", "virtual_ip_range")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    LOAD_PERIOD_FIELD_NUMBER: _ClassVar[int]
    RESTART_GRACE_FIELD_NUMBER: _ClassVar[int]
    RESOLVER_ADDR_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IP_RANGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    heartbeat_period: _duration_pb2.Duration
    load_period: _duration_pb2.Duration
    restart_grace: _duration_pb2.Duration
    resolver_addr: str
    virtual_ip_range: str
    def __init__(self, node_id: _Optional[str] = ..., heartbeat_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., load_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., restart_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., resolver_addr: _Optional[str] = ..., virtual_ip_range: _Optional[str] = ...) -> None: ...

class Assignments(_message.Message):
    __slots__ = ("type", "tasks", "removed", "secrets")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_COMPLETE: _ClassVar[Assignments.Type]
        TYPE_INCREMENTAL: _ClassVar[Assignments.Type]
    TYPE_COMPLETE: Assignments.Type
    TYPE_INCREMENTAL: Assignments.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    type: Assignments.Type
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    removed: _containers.RepeatedScalarFieldContainer[str]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    def __init__(self, type: _Optional[_Union[Assignments.Type, str]] = ..., tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ..., secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ...) -> None: ...
