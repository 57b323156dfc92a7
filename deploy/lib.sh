# shellcheck shell=bash
# Shell helpers shared by the deploy/ scripts; source it after defining say().

# terminate_pid LABEL PID SECONDS: SIGTERM, up to SECONDS of grace, then SIGKILL.
terminate_pid() {
    local label=$1 pid=$2 grace=$3
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$label did not exit within ${grace}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}
