"""Sizes and cpus are written one way, in the scheduler's reasons and the CLI's tables."""

from __future__ import annotations

from podium.client import views
from podium.manager.placement import schedule
from podium.rules.units import cpus, size
from podium.v1 import control, objects


def test_sizes_and_cpus() -> None:
    assert [size(n) for n in (0, 512, 1536, 1 << 20, 3 << 29, 5 << 40)] == [
        "0 B", "512 B", "1.5 KiB", "1 MiB", "1.5 GiB", "5 TiB"]
    assert [cpus(n) for n in (10**9, 5 * 10**8, 2 * 10**9)] == ["1 cpu", "0.5 cpus", "2 cpus"]


def test_the_scheduler_and_the_cli_write_a_size_alike() -> None:
    node = objects.Node(id="n1")
    node.description.name = "n1"
    node.description.capacity.memory_bytes = 1 << 30
    node.status.state = objects.NodeStatus.STATE_READY
    task = objects.Task(id="t1", service_id="s1")
    task.spec.resources.reservations.memory_bytes = 3 << 29
    [unplaced] = schedule([node], [], [task], 0.0).unplaced
    # The CLI's memory column for a task using that much.
    row: dict[str, object] = {}
    sample = control.GetLoadResponse.Task(task_id="t1")
    sample.latest.memory_bytes = 3 << 29
    views.add_task_load(row, sample)
    assert "1.5 GiB" in unplaced.reason and row["mem"] == "1.5 GiB", (unplaced.reason, row)
