import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_NEW: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_ASSIGNED: _ClassVar[TaskState]
    TASK_STATE_ACCEPTED: _ClassVar[TaskState]
    TASK_STATE_PREPARING: _ClassVar[TaskState]
    TASK_STATE_STARTING: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_COMPLETE: _ClassVar[TaskState]
    TASK_STATE_SHUTDOWN: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_REJECTED: _ClassVar[TaskState]
    TASK_STATE_ORPHANED: _ClassVar[TaskState]
    TASK_STATE_REMOVED: _ClassVar[TaskState]

class Health(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_NONE: _ClassVar[Health]
    HEALTH_STARTING: _ClassVar[Health]
    HEALTH_HEALTHY: _ClassVar[Health]
    HEALTH_UNHEALTHY: _ClassVar[Health]
TASK_STATE_NEW: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_ASSIGNED: TaskState
TASK_STATE_ACCEPTED: TaskState
TASK_STATE_PREPARING: TaskState
TASK_STATE_STARTING: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_COMPLETE: TaskState
TASK_STATE_SHUTDOWN: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_REJECTED: TaskState
TASK_STATE_ORPHANED: TaskState
TASK_STATE_REMOVED: TaskState
HEALTH_NONE: Health
HEALTH_STARTING: Health
HEALTH_HEALTHY: Health
HEALTH_UNHEALTHY: Health

class Meta(_message.Message):
    __slots__ = ("version", "created", "updated", "changed_by")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    version: int
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    changed_by: str
    def __init__(self, version: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed_by: _Optional[str] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("nano_cpus", "memory_bytes")
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    nano_cpus: int
    memory_bytes: int
    def __init__(self, nano_cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class ResourceRequirements(_message.Message):
    __slots__ = ("reservations", "limits")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    reservations: Resources
    limits: Resources
    def __init__(self, reservations: _Optional[_Union[Resources, _Mapping]] = ..., limits: _Optional[_Union[Resources, _Mapping]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("constraints",)
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    constraints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, constraints: _Optional[_Iterable[str]] = ...) -> None: ...

class PortConfig(_message.Message):
    __slots__ = ("protocol", "target_port", "published_port", "mode", "host_ip")
    class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PROTOCOL_TCP: _ClassVar[PortConfig.Protocol]
        PROTOCOL_UDP: _ClassVar[PortConfig.Protocol]
    PROTOCOL_TCP: PortConfig.Protocol
    PROTOCOL_UDP: PortConfig.Protocol
    class PublishMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUBLISH_MODE_INGRESS: _ClassVar[PortConfig.PublishMode]
        PUBLISH_MODE_HOST: _ClassVar[PortConfig.PublishMode]
    PUBLISH_MODE_INGRESS: PortConfig.PublishMode
    PUBLISH_MODE_HOST: PortConfig.PublishMode
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_PORT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    protocol: PortConfig.Protocol
    target_port: int
    published_port: int
    mode: PortConfig.PublishMode
    host_ip: str
    def __init__(self, protocol: _Optional[_Union[PortConfig.Protocol, str]] = ..., target_port: _Optional[int] = ..., published_port: _Optional[int] = ..., mode: _Optional[_Union[PortConfig.PublishMode, str]] = ..., host_ip: _Optional[str] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("test", "interval", "timeout", "retries", "start_period", "start_interval")
    TEST_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_FIELD_NUMBER: _ClassVar[int]
    START_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    test: _containers.RepeatedScalarFieldContainer[str]
    interval: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    retries: int
    start_period: _duration_pb2.Duration
    start_interval: _duration_pb2.Duration
    def __init__(self, test: _Optional[_Iterable[str]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retries: _Optional[int] = ..., start_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Probe(_message.Message):
    __slots__ = ("kind", "port", "path", "status_min", "status_max", "interval", "timeout", "retries", "start_period", "start_interval")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_HTTP: _ClassVar[Probe.Kind]
        KIND_TCP: _ClassVar[Probe.Kind]
    KIND_HTTP: Probe.Kind
    KIND_TCP: Probe.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_MIN_FIELD_NUMBER: _ClassVar[int]
    STATUS_MAX_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_FIELD_NUMBER: _ClassVar[int]
    START_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    kind: Probe.Kind
    port: int
    path: str
    status_min: int
    status_max: int
    interval: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    retries: int
    start_period: _duration_pb2.Duration
    start_interval: _duration_pb2.Duration
    def __init__(self, kind: _Optional[_Union[Probe.Kind, str]] = ..., port: _Optional[int] = ..., path: _Optional[str] = ..., status_min: _Optional[int] = ..., status_max: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retries: _Optional[int] = ..., start_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("condition", "delay", "max_attempts", "window")
    class Condition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONDITION_ANY: _ClassVar[RestartPolicy.Condition]
        CONDITION_ON_FAILURE: _ClassVar[RestartPolicy.Condition]
        CONDITION_NONE: _ClassVar[RestartPolicy.Condition]
    CONDITION_ANY: RestartPolicy.Condition
    CONDITION_ON_FAILURE: RestartPolicy.Condition
    CONDITION_NONE: RestartPolicy.Condition
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    condition: RestartPolicy.Condition
    delay: _duration_pb2.Duration
    max_attempts: int
    window: _duration_pb2.Duration
    def __init__(self, condition: _Optional[_Union[RestartPolicy.Condition, str]] = ..., delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Routing(_message.Message):
    __slots__ = ("balance", "proxy_protocol")
    class Balance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BALANCE_LEAST_CONNECTIONS: _ClassVar[Routing.Balance]
        BALANCE_ROUND_ROBIN: _ClassVar[Routing.Balance]
    BALANCE_LEAST_CONNECTIONS: Routing.Balance
    BALANCE_ROUND_ROBIN: Routing.Balance
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    PROXY_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    balance: Routing.Balance
    proxy_protocol: bool
    def __init__(self, balance: _Optional[_Union[Routing.Balance, str]] = ..., proxy_protocol: _Optional[bool] = ...) -> None: ...

class UpdateConfig(_message.Message):
    __slots__ = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order", "healthy_deadline")
    class FailureAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FAILURE_ACTION_ROLLBACK: _ClassVar[UpdateConfig.FailureAction]
        FAILURE_ACTION_PAUSE: _ClassVar[UpdateConfig.FailureAction]
        FAILURE_ACTION_CONTINUE: _ClassVar[UpdateConfig.FailureAction]
    FAILURE_ACTION_ROLLBACK: UpdateConfig.FailureAction
    FAILURE_ACTION_PAUSE: UpdateConfig.FailureAction
    FAILURE_ACTION_CONTINUE: UpdateConfig.FailureAction
    class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ORDER_DEFAULT: _ClassVar[UpdateConfig.Order]
        ORDER_START_FIRST: _ClassVar[UpdateConfig.Order]
        ORDER_STOP_FIRST: _ClassVar[UpdateConfig.Order]
    ORDER_DEFAULT: UpdateConfig.Order
    ORDER_START_FIRST: UpdateConfig.Order
    ORDER_STOP_FIRST: UpdateConfig.Order
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_ACTION_FIELD_NUMBER: _ClassVar[int]
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_RATIO_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    parallelism: int
    delay: _duration_pb2.Duration
    failure_action: UpdateConfig.FailureAction
    monitor: _duration_pb2.Duration
    max_failure_ratio: float
    order: UpdateConfig.Order
    healthy_deadline: _duration_pb2.Duration
    def __init__(self, parallelism: _Optional[int] = ..., delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., failure_action: _Optional[_Union[UpdateConfig.FailureAction, str]] = ..., monitor: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_failure_ratio: _Optional[float] = ..., order: _Optional[_Union[UpdateConfig.Order, str]] = ..., healthy_deadline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Canary(_message.Message):
    __slots__ = ("count", "auto_promote_after")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AUTO_PROMOTE_AFTER_FIELD_NUMBER: _ClassVar[int]
    count: int
    auto_promote_after: _duration_pb2.Duration
    def __init__(self, count: _Optional[int] = ..., auto_promote_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("image", "command", "entrypoint", "env", "labels", "init", "stop_grace_period", "healthcheck", "user", "working_dir", "hostname", "cap_add", "cap_drop", "sysctls", "ulimits", "stop_signal", "tty", "stdin_open", "extra_hosts", "dns", "dns_search", "dns_opt", "shm_size_bytes", "read_only", "log_driver", "log_options", "expose", "privileged", "security_opt", "group_add", "pids_limit", "mounts", "secrets", "configs", "devices", "device_cgroup_rules", "pid_mode", "ipc_mode", "userns_mode", "domainname", "cpu_shares", "cpuset_cpus", "oom_score_adj", "oom_kill_disable", "memswap_limit_bytes", "runtime", "cgroup_parent", "storage_opt", "blkio_weight")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SysctlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LogOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StorageOptEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    CAP_DROP_FIELD_NUMBER: _ClassVar[int]
    SYSCTLS_FIELD_NUMBER: _ClassVar[int]
    ULIMITS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_OPEN_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HOSTS_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    DNS_SEARCH_FIELD_NUMBER: _ClassVar[int]
    DNS_OPT_FIELD_NUMBER: _ClassVar[int]
    SHM_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    LOG_DRIVER_FIELD_NUMBER: _ClassVar[int]
    LOG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPOSE_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    SECURITY_OPT_FIELD_NUMBER: _ClassVar[int]
    GROUP_ADD_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CGROUP_RULES_FIELD_NUMBER: _ClassVar[int]
    PID_MODE_FIELD_NUMBER: _ClassVar[int]
    IPC_MODE_FIELD_NUMBER: _ClassVar[int]
    USERNS_MODE_FIELD_NUMBER: _ClassVar[int]
    DOMAINNAME_FIELD_NUMBER: _ClassVar[int]
    CPU_SHARES_FIELD_NUMBER: _ClassVar[int]
    CPUSET_CPUS_FIELD_NUMBER: _ClassVar[int]
    OOM_SCORE_ADJ_FIELD_NUMBER: _ClassVar[int]
    OOM_KILL_DISABLE_FIELD_NUMBER: _ClassVar[int]
    MEMSWAP_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    CGROUP_PARENT_FIELD_NUMBER: _ClassVar[int]
    STORAGE_OPT_FIELD_NUMBER: _ClassVar[int]
    BLKIO_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    init: bool
    stop_grace_period: _duration_pb2.Duration
    healthcheck: HealthCheck
    user: str
    working_dir: str
    hostname: str
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    cap_drop: _containers.RepeatedScalarFieldContainer[str]
    sysctls: _containers.ScalarMap[str, str]
    ulimits: _containers.RepeatedCompositeFieldContainer[Ulimit]
    stop_signal: str
    tty: bool
    stdin_open: bool
    extra_hosts: _containers.RepeatedScalarFieldContainer[str]
    dns: _containers.RepeatedScalarFieldContainer[str]
    dns_search: _containers.RepeatedScalarFieldContainer[str]
    dns_opt: _containers.RepeatedScalarFieldContainer[str]
    shm_size_bytes: int
    read_only: bool
    log_driver: str
    log_options: _containers.ScalarMap[str, str]
    expose: _containers.RepeatedScalarFieldContainer[str]
    privileged: bool
    security_opt: _containers.RepeatedScalarFieldContainer[str]
    group_add: _containers.RepeatedScalarFieldContainer[str]
    pids_limit: int
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    secrets: _containers.RepeatedCompositeFieldContainer[FileReference]
    configs: _containers.RepeatedCompositeFieldContainer[FileReference]
    devices: _containers.RepeatedScalarFieldContainer[str]
    device_cgroup_rules: _containers.RepeatedScalarFieldContainer[str]
    pid_mode: str
    ipc_mode: str
    userns_mode: str
    domainname: str
    cpu_shares: int
    cpuset_cpus: str
    oom_score_adj: int
    oom_kill_disable: bool
    memswap_limit_bytes: int
    runtime: str
    cgroup_parent: str
    storage_opt: _containers.ScalarMap[str, str]
    blkio_weight: int
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., entrypoint: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., init: _Optional[bool] = ..., stop_grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., healthcheck: _Optional[_Union[HealthCheck, _Mapping]] = ..., user: _Optional[str] = ..., working_dir: _Optional[str] = ..., hostname: _Optional[str] = ..., cap_add: _Optional[_Iterable[str]] = ..., cap_drop: _Optional[_Iterable[str]] = ..., sysctls: _Optional[_Mapping[str, str]] = ..., ulimits: _Optional[_Iterable[_Union[Ulimit, _Mapping]]] = ..., stop_signal: _Optional[str] = ..., tty: _Optional[bool] = ..., stdin_open: _Optional[bool] = ..., extra_hosts: _Optional[_Iterable[str]] = ..., dns: _Optional[_Iterable[str]] = ..., dns_search: _Optional[_Iterable[str]] = ..., dns_opt: _Optional[_Iterable[str]] = ..., shm_size_bytes: _Optional[int] = ..., read_only: _Optional[bool] = ..., log_driver: _Optional[str] = ..., log_options: _Optional[_Mapping[str, str]] = ..., expose: _Optional[_Iterable[str]] = ..., privileged: _Optional[bool] = ..., security_opt: _Optional[_Iterable[str]] = ..., group_add: _Optional[_Iterable[str]] = ..., pids_limit: _Optional[int] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[FileReference, _Mapping]]] = ..., configs: _Optional[_Iterable[_Union[FileReference, _Mapping]]] = ..., devices: _Optional[_Iterable[str]] = ..., device_cgroup_rules: _Optional[_Iterable[str]] = ..., pid_mode: _Optional[str] = ..., ipc_mode: _Optional[str] = ..., userns_mode: _Optional[str] = ..., domainname: _Optional[str] = ..., cpu_shares: _Optional[int] = ..., cpuset_cpus: _Optional[str] = ..., oom_score_adj: _Optional[int] = ..., oom_kill_disable: _Optional[bool] = ..., memswap_limit_bytes: _Optional[int] = ..., runtime: _Optional[str] = ..., cgroup_parent: _Optional[str] = ..., storage_opt: _Optional[_Mapping[str, str]] = ..., blkio_weight: _Optional[int] = ...) -> None: ...

class Mount(_message.Message):
    __slots__ = ("type", "source", "target", "read_only", "driver", "driver_options", "labels", "no_copy", "create_host_path", "propagation", "tmpfs_size_bytes", "tmpfs_mode", "may_move", "external")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_VOLUME: _ClassVar[Mount.Type]
        TYPE_BIND: _ClassVar[Mount.Type]
        TYPE_TMPFS: _ClassVar[Mount.Type]
    TYPE_VOLUME: Mount.Type
    TYPE_BIND: Mount.Type
    TYPE_TMPFS: Mount.Type
    class DriverOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NO_COPY_FIELD_NUMBER: _ClassVar[int]
    CREATE_HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_FIELD_NUMBER: _ClassVar[int]
    TMPFS_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TMPFS_MODE_FIELD_NUMBER: _ClassVar[int]
    MAY_MOVE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    type: Mount.Type
    source: str
    target: str
    read_only: bool
    driver: str
    driver_options: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    no_copy: bool
    create_host_path: bool
    propagation: str
    tmpfs_size_bytes: int
    tmpfs_mode: int
    may_move: bool
    external: bool
    def __init__(self, type: _Optional[_Union[Mount.Type, str]] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., read_only: _Optional[bool] = ..., driver: _Optional[str] = ..., driver_options: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., no_copy: _Optional[bool] = ..., create_host_path: _Optional[bool] = ..., propagation: _Optional[str] = ..., tmpfs_size_bytes: _Optional[int] = ..., tmpfs_mode: _Optional[int] = ..., may_move: _Optional[bool] = ..., external: _Optional[bool] = ...) -> None: ...

class FileReference(_message.Message):
    __slots__ = ("id", "name", "target", "uid", "gid", "mode")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    target: str
    uid: str
    gid: str
    mode: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., target: _Optional[str] = ..., uid: _Optional[str] = ..., gid: _Optional[str] = ..., mode: _Optional[int] = ...) -> None: ...

class NetworkAttachment(_message.Message):
    __slots__ = ("name", "aliases")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class Ulimit(_message.Message):
    __slots__ = ("name", "soft", "hard")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    name: str
    soft: int
    hard: int
    def __init__(self, name: _Optional[str] = ..., soft: _Optional[int] = ..., hard: _Optional[int] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ("name", "labels", "container", "mode", "replicas", "resources", "placement", "ports", "stack", "probe", "restart_policy", "fence_after", "routing", "update_config", "rollback_config", "canary", "force_update", "autoscale", "networks")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_REPLICATED: _ClassVar[ServiceSpec.Mode]
        MODE_GLOBAL: _ClassVar[ServiceSpec.Mode]
    MODE_REPLICATED: ServiceSpec.Mode
    MODE_GLOBAL: ServiceSpec.Mode
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    FENCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    FORCE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    container: ContainerSpec
    mode: ServiceSpec.Mode
    replicas: int
    resources: ResourceRequirements
    placement: Placement
    ports: _containers.RepeatedCompositeFieldContainer[PortConfig]
    stack: str
    probe: Probe
    restart_policy: RestartPolicy
    fence_after: _duration_pb2.Duration
    routing: Routing
    update_config: UpdateConfig
    rollback_config: UpdateConfig
    canary: Canary
    force_update: int
    autoscale: Autoscale
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachment]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., container: _Optional[_Union[ContainerSpec, _Mapping]] = ..., mode: _Optional[_Union[ServiceSpec.Mode, str]] = ..., replicas: _Optional[int] = ..., resources: _Optional[_Union[ResourceRequirements, _Mapping]] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ..., stack: _Optional[str] = ..., probe: _Optional[_Union[Probe, _Mapping]] = ..., restart_policy: _Optional[_Union[RestartPolicy, _Mapping]] = ..., fence_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., routing: _Optional[_Union[Routing, _Mapping]] = ..., update_config: _Optional[_Union[UpdateConfig, _Mapping]] = ..., rollback_config: _Optional[_Union[UpdateConfig, _Mapping]] = ..., canary: _Optional[_Union[Canary, _Mapping]] = ..., force_update: _Optional[int] = ..., autoscale: _Optional[_Union[Autoscale, _Mapping]] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachment, _Mapping]]] = ...) -> None: ...

class Autoscale(_message.Message):
    __slots__ = ("min", "max", "cpu", "memory", "requests_per_second", "connections", "tolerance", "scale_down_window", "max_step_up", "max_step_down")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    SCALE_DOWN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_UP_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_DOWN_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    cpu: float
    memory: float
    requests_per_second: float
    connections: float
    tolerance: float
    scale_down_window: _duration_pb2.Duration
    max_step_up: int
    max_step_down: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ..., cpu: _Optional[float] = ..., memory: _Optional[float] = ..., requests_per_second: _Optional[float] = ..., connections: _Optional[float] = ..., tolerance: _Optional[float] = ..., scale_down_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_step_up: _Optional[int] = ..., max_step_down: _Optional[int] = ...) -> None: ...

class AutoscaleMetric(_message.Message):
    __slots__ = ("name", "target", "current", "partial")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: float
    current: float
    partial: bool
    def __init__(self, name: _Optional[str] = ..., target: _Optional[float] = ..., current: _Optional[float] = ..., partial: _Optional[bool] = ...) -> None: ...

class AutoscaleStatus(_message.Message):
    __slots__ = ("last_decision", "last_time", "from_replicas", "to_replicas", "at_capacity", "desired", "holding", "metrics")
    LAST_DECISION_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TO_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    AT_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    HOLDING_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    last_decision: str
    last_time: _timestamp_pb2.Timestamp
    from_replicas: int
    to_replicas: int
    at_capacity: str
    desired: int
    holding: str
    metrics: _containers.RepeatedCompositeFieldContainer[AutoscaleMetric]
    def __init__(self, last_decision: _Optional[str] = ..., last_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_replicas: _Optional[int] = ..., to_replicas: _Optional[int] = ..., at_capacity: _Optional[str] = ..., desired: _Optional[int] = ..., holding: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[AutoscaleMetric, _Mapping]]] = ...) -> None: ...

class UpdateStatus(_message.Message):
    __slots__ = ("state", "started", "completed", "message", "from_version", "to_version", "done", "total", "failed_tasks", "deploy_id", "manual", "promoted", "reason")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_NONE: _ClassVar[UpdateStatus.State]
        STATE_UPDATING: _ClassVar[UpdateStatus.State]
        STATE_PAUSED: _ClassVar[UpdateStatus.State]
        STATE_COMPLETED: _ClassVar[UpdateStatus.State]
        STATE_ROLLING_BACK: _ClassVar[UpdateStatus.State]
        STATE_ROLLBACK_PAUSED: _ClassVar[UpdateStatus.State]
        STATE_ROLLED_BACK: _ClassVar[UpdateStatus.State]
        STATE_CANARY: _ClassVar[UpdateStatus.State]
    STATE_NONE: UpdateStatus.State
    STATE_UPDATING: UpdateStatus.State
    STATE_PAUSED: UpdateStatus.State
    STATE_COMPLETED: UpdateStatus.State
    STATE_ROLLING_BACK: UpdateStatus.State
    STATE_ROLLBACK_PAUSED: UpdateStatus.State
    STATE_ROLLED_BACK: UpdateStatus.State
    STATE_CANARY: UpdateStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILED_TASKS_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_ID_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: UpdateStatus.State
    started: _timestamp_pb2.Timestamp
    completed: _timestamp_pb2.Timestamp
    message: str
    from_version: int
    to_version: int
    done: int
    total: int
    failed_tasks: _containers.RepeatedScalarFieldContainer[str]
    deploy_id: str
    manual: bool
    promoted: bool
    reason: str
    def __init__(self, state: _Optional[_Union[UpdateStatus.State, str]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., failed_tasks: _Optional[_Iterable[str]] = ..., deploy_id: _Optional[str] = ..., manual: _Optional[bool] = ..., promoted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ServiceVersion(_message.Message):
    __slots__ = ("version", "time", "spec", "change")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    version: int
    time: _timestamp_pb2.Timestamp
    spec: ServiceSpec
    change: str
    def __init__(self, version: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., change: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("id", "meta", "spec", "spec_version", "update_status", "versions", "last_version", "autoscale_status", "virtual_ip")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALE_STATUS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IP_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ServiceSpec
    spec_version: int
    update_status: UpdateStatus
    versions: _containers.RepeatedCompositeFieldContainer[ServiceVersion]
    last_version: int
    autoscale_status: AutoscaleStatus
    virtual_ip: str
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., spec_version: _Optional[int] = ..., update_status: _Optional[_Union[UpdateStatus, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[ServiceVersion, _Mapping]]] = ..., last_version: _Optional[int] = ..., autoscale_status: _Optional[_Union[AutoscaleStatus, _Mapping]] = ..., virtual_ip: _Optional[str] = ...) -> None: ...

class PortBinding(_message.Message):
    __slots__ = ("protocol", "target_port", "published_port", "host_ip")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    protocol: PortConfig.Protocol
    target_port: int
    published_port: int
    host_ip: str
    def __init__(self, protocol: _Optional[_Union[PortConfig.Protocol, str]] = ..., target_port: _Optional[int] = ..., published_port: _Optional[int] = ..., host_ip: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("time", "kind", "message")
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    kind: str
    message: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("state", "timestamp", "message", "err", "container_id", "exit_code", "ports", "health", "ready", "restarts", "history", "container_addr")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ADDR_FIELD_NUMBER: _ClassVar[int]
    state: TaskState
    timestamp: _timestamp_pb2.Timestamp
    message: str
    err: str
    container_id: str
    exit_code: int
    ports: _containers.RepeatedCompositeFieldContainer[PortBinding]
    health: Health
    ready: bool
    restarts: int
    history: _containers.RepeatedCompositeFieldContainer[TaskEvent]
    container_addr: str
    def __init__(self, state: _Optional[_Union[TaskState, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., container_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., ports: _Optional[_Iterable[_Union[PortBinding, _Mapping]]] = ..., health: _Optional[_Union[Health, str]] = ..., ready: _Optional[bool] = ..., restarts: _Optional[int] = ..., history: _Optional[_Iterable[_Union[TaskEvent, _Mapping]]] = ..., container_addr: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "meta", "service_id", "service_name", "slot", "node_id", "spec", "spec_version", "desired_state", "status", "attempt", "not_before", "canary", "pinned_node")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    PINNED_NODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    service_id: str
    service_name: str
    slot: int
    node_id: str
    spec: ServiceSpec
    spec_version: int
    desired_state: TaskState
    status: TaskStatus
    attempt: int
    not_before: _timestamp_pb2.Timestamp
    canary: bool
    pinned_node: str
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., service_id: _Optional[str] = ..., service_name: _Optional[str] = ..., slot: _Optional[int] = ..., node_id: _Optional[str] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., spec_version: _Optional[int] = ..., desired_state: _Optional[_Union[TaskState, str]] = ..., status: _Optional[_Union[TaskStatus, _Mapping]] = ..., attempt: _Optional[int] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canary: _Optional[bool] = ..., pinned_node: _Optional[str] = ...) -> None: ...

class NodeDescription(_message.Message):
    __slots__ = ("name", "labels", "capacity", "engine_version", "agent_version", "advertise_addr", "relay_port")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    RELAY_PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    capacity: Resources
    engine_version: str
    agent_version: str
    advertise_addr: str
    relay_port: int
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., engine_version: _Optional[str] = ..., agent_version: _Optional[str] = ..., advertise_addr: _Optional[str] = ..., relay_port: _Optional[int] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("availability",)
    class Availability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AVAILABILITY_ACTIVE: _ClassVar[NodeSpec.Availability]
        AVAILABILITY_PAUSE: _ClassVar[NodeSpec.Availability]
        AVAILABILITY_DRAIN: _ClassVar[NodeSpec.Availability]
    AVAILABILITY_ACTIVE: NodeSpec.Availability
    AVAILABILITY_PAUSE: NodeSpec.Availability
    AVAILABILITY_DRAIN: NodeSpec.Availability
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    availability: NodeSpec.Availability
    def __init__(self, availability: _Optional[_Union[NodeSpec.Availability, str]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("state", "timestamp", "message", "addr", "engine_unresponsive", "engine_error", "held_until")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNKNOWN: _ClassVar[NodeStatus.State]
        STATE_DOWN: _ClassVar[NodeStatus.State]
        STATE_READY: _ClassVar[NodeStatus.State]
        STATE_SUSPECT: _ClassVar[NodeStatus.State]
        STATE_AGENT_DOWN: _ClassVar[NodeStatus.State]
    STATE_UNKNOWN: NodeStatus.State
    STATE_DOWN: NodeStatus.State
    STATE_READY: NodeStatus.State
    STATE_SUSPECT: NodeStatus.State
    STATE_AGENT_DOWN: NodeStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_UNRESPONSIVE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ERROR_FIELD_NUMBER: _ClassVar[int]
    HELD_UNTIL_FIELD_NUMBER: _ClassVar[int]
    state: NodeStatus.State
    timestamp: _timestamp_pb2.Timestamp
    message: str
    addr: str
    engine_unresponsive: bool
    engine_error: str
    held_until: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[NodeStatus.State, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., addr: _Optional[str] = ..., engine_unresponsive: _Optional[bool] = ..., engine_error: _Optional[str] = ..., held_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "meta", "spec", "description", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: NodeSpec
    description: NodeDescription
    status: NodeStatus
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., description: _Optional[_Union[NodeDescription, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("id", "meta", "spec", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: SecretSpec
    version: int
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[SecretSpec, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class SecretSpec(_message.Message):
    __slots__ = ("kind", "name", "data", "labels", "digest")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_SECRET: _ClassVar[SecretSpec.Kind]
        KIND_CONFIG: _ClassVar[SecretSpec.Kind]
    KIND_SECRET: SecretSpec.Kind
    KIND_CONFIG: SecretSpec.Kind
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    kind: SecretSpec.Kind
    name: str
    data: bytes
    labels: _containers.ScalarMap[str, str]
    digest: str
    def __init__(self, kind: _Optional[_Union[SecretSpec.Kind, str]] = ..., name: _Optional[str] = ..., data: _Optional[bytes] = ..., labels: _Optional[_Mapping[str, str]] = ..., digest: _Optional[str] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("id", "meta", "kind", "name", "role", "serials", "key_sha256")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_USER: _ClassVar[Identity.Kind]
        KIND_NODE: _ClassVar[Identity.Kind]
    KIND_USER: Identity.Kind
    KIND_NODE: Identity.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERIALS_FIELD_NUMBER: _ClassVar[int]
    KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    kind: Identity.Kind
    name: str
    role: str
    serials: _containers.RepeatedScalarFieldContainer[str]
    key_sha256: str
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., kind: _Optional[_Union[Identity.Kind, str]] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., serials: _Optional[_Iterable[str]] = ..., key_sha256: _Optional[str] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("id", "meta", "agent_token_secret")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    AGENT_TOKEN_SECRET_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    agent_token_secret: str
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., agent_token_secret: _Optional[str] = ...) -> None: ...
