import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from podium.v1 import dispatcher_pb2 as _dispatcher_pb2
from podium.v1 import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateServiceRequest(_message.Message):
    __slots__ = ("spec", "deploy_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    deploy_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., deploy_id: _Optional[str] = ...) -> None: ...

class UpdateServiceRequest(_message.Message):
    __slots__ = ("service_id", "version", "spec", "deploy_id")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    version: int
    spec: _objects_pb2.ServiceSpec
    deploy_id: str
    def __init__(self, service_id: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., deploy_id: _Optional[str] = ...) -> None: ...

class RollbackServiceRequest(_message.Message):
    __slots__ = ("ref", "version")
    REF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ref: str
    version: int
    def __init__(self, ref: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class PromoteServiceRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ScaleServiceRequest(_message.Message):
    __slots__ = ("ref", "replicas")
    REF_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    replicas: int
    def __init__(self, ref: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class RemoveServiceRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class RemoveServiceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ServiceResponse(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ...) -> None: ...

class TaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _objects_pb2.Task
    def __init__(self, task: _Optional[_Union[_objects_pb2.Task, _Mapping]] = ...) -> None: ...

class NodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    def __init__(self, services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("service", "node")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    service: str
    node: str
    def __init__(self, service: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("ref", "availability")
    REF_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    ref: str
    availability: _objects_pb2.NodeSpec.Availability
    def __init__(self, ref: _Optional[str] = ..., availability: _Optional[_Union[_objects_pb2.NodeSpec.Availability, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ...) -> None: ...

class GetLoadRequest(_message.Message):
    __slots__ = ("history",)
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    history: int
    def __init__(self, history: _Optional[int] = ...) -> None: ...

class LoadSample(_message.Message):
    __slots__ = ("time", "cpu_cores", "memory_bytes", "memory_share")
    TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SHARE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    cpu_cores: float
    memory_bytes: int
    memory_share: float
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cpu_cores: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., memory_share: _Optional[float] = ...) -> None: ...

class GetLoadResponse(_message.Message):
    __slots__ = ("nodes", "tasks")
    class Node(_message.Message):
        __slots__ = ("node_id", "latest", "time", "history")
        NODE_ID_FIELD_NUMBER: _ClassVar[int]
        LATEST_FIELD_NUMBER: _ClassVar[int]
        TIME_FIELD_NUMBER: _ClassVar[int]
        HISTORY_FIELD_NUMBER: _ClassVar[int]
        node_id: str
        latest: _dispatcher_pb2.NodeLoad
        time: _timestamp_pb2.Timestamp
        history: _containers.RepeatedCompositeFieldContainer[LoadSample]
        def __init__(self, node_id: _Optional[str] = ..., latest: _Optional[_Union[_dispatcher_pb2.NodeLoad, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[LoadSample, _Mapping]]] = ...) -> None: ...
    class Task(_message.Message):
        __slots__ = ("task_id", "latest", "time", "history", "connections", "requests_per_second")
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        LATEST_FIELD_NUMBER: _ClassVar[int]
        TIME_FIELD_NUMBER: _ClassVar[int]
        HISTORY_FIELD_NUMBER: _ClassVar[int]
        CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
        REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
        task_id: str
        latest: _dispatcher_pb2.TaskLoad
        time: _timestamp_pb2.Timestamp
        history: _containers.RepeatedCompositeFieldContainer[LoadSample]
        connections: int
        requests_per_second: float
        def __init__(self, task_id: _Optional[str] = ..., latest: _Optional[_Union[_dispatcher_pb2.TaskLoad, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[LoadSample, _Mapping]]] = ..., connections: _Optional[int] = ..., requests_per_second: _Optional[float] = ...) -> None: ...
    NODES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[GetLoadResponse.Node]
    tasks: _containers.RepeatedCompositeFieldContainer[GetLoadResponse.Task]
    def __init__(self, nodes: _Optional[_Iterable[_Union[GetLoadResponse.Node, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[GetLoadResponse.Task, _Mapping]]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("kinds",)
    KINDS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("action", "timestamp", "node", "service", "task", "actor")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_CREATE: _ClassVar[Event.Action]
        ACTION_UPDATE: _ClassVar[Event.Action]
        ACTION_DELETE: _ClassVar[Event.Action]
    ACTION_CREATE: Event.Action
    ACTION_UPDATE: Event.Action
    ACTION_DELETE: Event.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    action: Event.Action
    timestamp: _timestamp_pb2.Timestamp
    node: _objects_pb2.Node
    service: _objects_pb2.Service
    task: _objects_pb2.Task
    actor: str
    def __init__(self, action: _Optional[_Union[Event.Action, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., task: _Optional[_Union[_objects_pb2.Task, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.SecretSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.SecretSpec, _Mapping]] = ...) -> None: ...

class SecretResponse(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: _objects_pb2.Secret
    def __init__(self, secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: _objects_pb2.SecretSpec.Kind
    def __init__(self, kind: _Optional[_Union[_objects_pb2.SecretSpec.Kind, str]] = ...) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ...) -> None: ...

class RemoveSecretRequest(_message.Message):
    __slots__ = ("kind", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: _objects_pb2.SecretSpec.Kind
    name: str
    def __init__(self, kind: _Optional[_Union[_objects_pb2.SecretSpec.Kind, str]] = ..., name: _Optional[str] = ...) -> None: ...

class RemoveSecretResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateSecretsKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateSecretsKeyResponse(_message.Message):
    __slots__ = ("key_id", "secrets")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    secrets: int
    def __init__(self, key_id: _Optional[str] = ..., secrets: _Optional[int] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("ref", "force")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    force: bool
    def __init__(self, ref: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "role", "created")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    created: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddUserRequest(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class AddUserResponse(_message.Message):
    __slots__ = ("user", "certificate", "key", "ca")
    USER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CA_FIELD_NUMBER: _ClassVar[int]
    user: User
    certificate: bytes
    key: bytes
    ca: bytes
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., certificate: _Optional[bytes] = ..., key: _Optional[bytes] = ..., ca: _Optional[bytes] = ...) -> None: ...

class RemoveUserRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveUserResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class GetJoinTokenRequest(_message.Message):
    __slots__ = ("rotate",)
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    rotate: bool
    def __init__(self, rotate: _Optional[bool] = ...) -> None: ...

class GetJoinTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("ref", "follow", "since", "tail")
    REF_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    ref: str
    follow: bool
    since: _timestamp_pb2.Timestamp
    tail: int
    def __init__(self, ref: _Optional[str] = ..., follow: _Optional[bool] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tail: _Optional[int] = ...) -> None: ...

class LogsResponse(_message.Message):
    __slots__ = ("task_id", "task_name", "node_id", "lines", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    node_id: str
    lines: _containers.RepeatedCompositeFieldContainer[_dispatcher_pb2.LogLine]
    error: str
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., node_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[_dispatcher_pb2.LogLine, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class PlanDeployRequest(_message.Message):
    __slots__ = ("specs",)
    SPECS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[_objects_pb2.ServiceSpec]
    def __init__(self, specs: _Optional[_Iterable[_Union[_objects_pb2.ServiceSpec, _Mapping]]] = ...) -> None: ...

class PlanDeployResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServicePlan]
    def __init__(self, services: _Optional[_Iterable[_Union[ServicePlan, _Mapping]]] = ...) -> None: ...

class ServicePlan(_message.Message):
    __slots__ = ("name", "action", "changes", "new_tasks", "replaced_tasks", "pending")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNCHANGED: _ClassVar[ServicePlan.Action]
        ACTION_CREATE: _ClassVar[ServicePlan.Action]
        ACTION_UPDATE: _ClassVar[ServicePlan.Action]
        ACTION_RECONFIGURE: _ClassVar[ServicePlan.Action]
    ACTION_UNCHANGED: ServicePlan.Action
    ACTION_CREATE: ServicePlan.Action
    ACTION_UPDATE: ServicePlan.Action
    ACTION_RECONFIGURE: ServicePlan.Action
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEW_TASKS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_TASKS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: ServicePlan.Action
    changes: _containers.RepeatedScalarFieldContainer[str]
    new_tasks: _containers.RepeatedCompositeFieldContainer[PlannedTask]
    replaced_tasks: _containers.RepeatedScalarFieldContainer[str]
    pending: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[ServicePlan.Action, str]] = ..., changes: _Optional[_Iterable[str]] = ..., new_tasks: _Optional[_Iterable[_Union[PlannedTask, _Mapping]]] = ..., replaced_tasks: _Optional[_Iterable[str]] = ..., pending: _Optional[_Iterable[str]] = ...) -> None: ...

class PlannedTask(_message.Message):
    __slots__ = ("slot", "node_id", "node_name")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    slot: int
    node_id: str
    node_name: str
    def __init__(self, slot: _Optional[int] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ...) -> None: ...

class DashboardLoginRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DashboardLoginResponse(_message.Message):
    __slots__ = ("token", "expires", "host", "port", "user", "role")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires: _timestamp_pb2.Timestamp
    host: str
    port: int
    user: str
    role: str
    def __init__(self, token: _Optional[str] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., user: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...
