"""The generic workflow layer (mlpot.workflows): resume, checkpoints, changed params, failures, no
orphaned processes after the driver is killed, the cluster section's mapping onto Parsl, MPI tasks.

Task functions: :mod:`mlpot.workflows._selftest` (each run appends a line to ``runs.txt`` in its
folder, so a test counts real executions)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("parsl")

from mlpot.config.base import read_tree  # noqa: E402
from mlpot.errors import ConfigError, WorkflowError  # noqa: E402
from mlpot.workflows import ClusterConfig, Resources, Task, WorkflowSession, load_cluster, run_workflow  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
F = "mlpot.workflows._selftest:"
MPIRUN = Path(sys.executable).parent / "mpirun"


def runs(root: Path, name: str) -> int:
    """How often task ``name`` really ran (lines of its runs.txt)."""
    p = root / name / "runs.txt"
    return len(p.read_text().splitlines()) if p.exists() else 0


def chain(values: dict[str, int]) -> list[Task]:
    """a → b → d, c alone."""
    return [Task("a", F + "add", {"value": values.get("a", 1)}),
            Task("b", F + "add", {"value": values.get("b", 10)}, deps=("a",)),
            Task("c", F + "add", {"value": values.get("c", 100)}),
            Task("d/x", F + "add", {"value": 0}, deps=("b",))]


# ------------------------------------------------------------------------------------------ resume, reuse
def test_changed_params_rerun_only_the_task_and_its_dependents(tmp_path: Path) -> None:
    first = run_workflow(chain({}), tmp_path, progress=False)
    assert first.ok and first.reused == set()
    assert first.results == {"a": {"value": 1}, "b": {"value": 11}, "c": {"value": 100}, "d/x": {"value": 11}}
    again = run_workflow(chain({}), tmp_path, progress=False)
    assert again.reused == {"a", "b", "c", "d/x"} and again.results == first.results
    assert [runs(tmp_path, n) for n in ("a", "b", "c", "d/x")] == [1, 1, 1, 1]
    changed = run_workflow(chain({"a": 2}), tmp_path, progress=False)
    assert changed.reused == {"c"}
    assert changed.results["d/x"] == {"value": 12}
    assert [runs(tmp_path, n) for n in ("a", "b", "c", "d/x")] == [2, 2, 1, 2]
    only_c = run_workflow(chain({"a": 2, "c": 5}), tmp_path, progress=False)
    assert only_c.reused == {"a", "b", "d/x"} and only_c.results["c"] == {"value": 5}
    assert [runs(tmp_path, n) for n in ("a", "b", "c", "d/x")] == [2, 2, 2, 2]


def test_a_session_runs_dependent_rounds_on_one_executor(tmp_path: Path) -> None:
    """Round 2 is built from round 1's results (as a coexistence-line trace or a learning loop does);
    Parsl starts once (one run directory), the lock is held for the session and released after."""
    with WorkflowSession(tmp_path, progress=False) as session:
        first = session.run(chain({}))
        assert (tmp_path / ".lock").exists()
        nxt = Task("e", F + "add", {"value": first.results["d/x"]["value"]}, deps=("c",))
        second = session.run(chain({}) + [nxt])
    assert second.reused == {"a", "b", "c", "d/x"} and second.results["e"] == {"value": 111}
    assert [p.name for p in (tmp_path / ".parsl").iterdir() if p.name != "workers"] == ["000"]
    assert not (tmp_path / ".lock").exists()


def test_half_finished_task_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    tasks = [Task("md", F + "checkpointed", {"steps": 5, "crash_after": 2}),
             Task("after", F + "add", {"value": 1}, deps=())]
    first = run_workflow(tasks, tmp_path, progress=False)
    assert set(first.failed) == {"md"} and "exited with status 9" in first.failed["md"]
    assert first.results == {"after": {"value": 1}}
    assert (tmp_path / "md" / "checkpoint.txt").read_text().split() == ["0", "1"]  # the folder was not wiped
    second = run_workflow(tasks, tmp_path, progress=False)
    assert second.ok and second.reused == {"after"}
    assert second.results["md"] == {"started_at": 2, "steps": 5}
    assert runs(tmp_path, "md") == 2 and runs(tmp_path, "after") == 1


def test_failing_task_keeps_its_own_error_and_the_others_finish(tmp_path: Path) -> None:
    tasks = [Task("solid", F + "fail", {"message": "fcc: the solid melted at step 40"}),
             Task("rs", F + "add", {}, deps=("solid",)),
             Task("combine", F + "add", {}, deps=("rs", "liquid")),
             Task("liquid", F + "add", {"value": 3})]
    out = run_workflow(tasks, tmp_path, progress=False)
    assert out.failed == {"solid": "fcc: the solid melted at step 40", "rs": "skipped: dependency solid failed",
                          "combine": "skipped: dependency solid failed"}  # the task that failed, also downstream
    assert out.results == {"liquid": {"value": 3}}
    assert (tmp_path / "solid" / "FAILED").read_text().splitlines()[0] == "fcc: the solid melted at step 40"
    log = (tmp_path / "solid" / "task.log").read_text()
    assert "Traceback" in log and "SimulationError: fcc: the solid melted" in log
    assert not (tmp_path / "rs").exists()  # a skipped task never ran
    again = run_workflow(tasks, tmp_path, progress=False)  # a failed task is not reused: it runs again
    assert runs(tmp_path, "solid") == 2 and again.reused == {"liquid"}


def test_walltime_ends_the_task_and_its_processes(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.write_text("")
    t0 = time.monotonic()
    out = run_workflow([Task("long", F + "hold", {"while_exists": str(hold), "max_s": 60},
                             resources=Resources(walltime_s=1.0))], tmp_path / "wf", progress=False)
    assert "exceeded its walltime of 1 s" in out.failed["long"]
    assert time.monotonic() - t0 < 20
    pid = int((tmp_path / "wf" / "long" / "started.0").read_text())
    assert not _alive(pid)
    assert (tmp_path / "wf" / "long" / "ended.0").exists()  # SIGTERM first: the task's finally block ran


def test_bad_task_lists_are_one_clear_error(tmp_path: Path) -> None:
    cases = [
        ([Task("a", F + "add", {}, deps=("bb",)), Task("b", F + "add", {})], "unknown dependency 'bb' (did you mean `b`?)"),
        ([Task("a", F + "add", {}, deps=("b",)), Task("b", F + "add", {}, deps=("a",))], "dependency cycle: a -> b -> a"),
        ([Task("../x", F + "add", {})], "task name '../x'"),
        ([Task("a", F + "add", {}), Task("a", F + "add", {})], "task name 'a' is used twice"),
        ([Task("a", "mlpot.workflows._selftest.add", {})], "expected 'package.module:function'"),
        ([Task("a", F + "add", {"path": Path("x")})], "task 'a': params are not JSON-serialisable"),
        ([Task("a", F + "add", {}, resources=Resources(gpus=1, mpi_ranks=2))], "gpus=1 is not a multiple of mpi_ranks=2"),
        ([Task("a", F + "add", {}), Task("a/b", F + "add", {})], "lies inside the folder of task 'a'"),
        ([Task("a", F + "add", {}, deps="b"), Task("b", F + "add", {})], "deps: expected a tuple of task names, found 'b'"),
    ]
    for tasks, message in cases:
        with pytest.raises(WorkflowError) as info:
            run_workflow(tasks, tmp_path, progress=False)
        assert message in str(info.value), (message, str(info.value))
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_task_environment_and_fake_gpu_pinning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    tasks = [Task(f"g{i}", F + "env", {"i": i}, resources=Resources(gpus=1)) for i in range(2)]
    tasks += [Task("cpu", F + "env", {}), Task("two", F + "env", {}, resources=Resources(gpus=2)),
              Task("three", F + "env", {}, resources=Resources(gpus=3))]
    out = run_workflow(tasks, tmp_path, progress=False, max_workers=2)
    assert sorted(out.results[f"g{i}"]["CUDA_VISIBLE_DEVICES"] for i in range(2)) == ["4", "7"]
    assert out.results["two"]["CUDA_VISIBLE_DEVICES"] in ("4,7", "7,4")
    assert out.results["cpu"]["CUDA_VISIBLE_DEVICES"] == ""  # a CPU task does not see the GPUs
    assert out.results["cpu"]["cwd"] == str((tmp_path / "cpu").resolve()) == out.results["cpu"]["workdir"]
    assert out.results["cpu"]["OMP_NUM_THREADS"] == "1"
    assert out.failed["three"].startswith("needs 3 GPU(s), this machine offers 2")


@pytest.mark.mpi
def test_mpi_task_runs_through_mpirun(tmp_path: Path) -> None:
    pytest.importorskip("mpi4py")
    out = run_workflow([Task("mpi", F + "mpi_hello", {}, resources=Resources(mpi_ranks=2))], tmp_path,
                       progress=False)
    assert out.results == {"mpi": {"size": 2, "ranks": 2}}, out.failed
    assert sorted(p.name for p in (tmp_path / "mpi").glob("rank*.txt")) == ["rank0.txt", "rank1.txt"]
    assert "mpirun -n 2" in (tmp_path / "mpi" / "task.log").read_text()


# ------------------------------------------------------------------------------------------ killing the driver
DRIVER = """
import sys
from pathlib import Path
from mlpot.workflows import ClusterConfig, Resources, Task, run_workflow
root, hold, ranks, executor = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
F = "mlpot.workflows._selftest:"
tasks = [Task("quick", F + "add", {"value": 1}), Task("next", F + "add", {"value": 2}, deps=("quick",)),
         Task("long", F + "hold", {"while_exists": hold, "max_s": 120}, deps=("next",),
              resources=Resources(mpi_ranks=ranks))]
cluster = ClusterConfig(scheduler="local", tasks_per_node=1) if executor == "htex" else None
out = run_workflow(tasks, root, cluster, progress=False)
print(sorted(out.results))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _task_processes(driver_pid: int) -> list[int]:
    """Live processes started for the workflow of ``driver_pid`` (they carry MLPOT_WORKFLOW_DRIVER)."""
    marker = f"MLPOT_WORKFLOW_DRIVER={socket.gethostname()}:{driver_pid}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                env = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in env.split(b"\0") and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _start_driver(tmp_path: Path, ranks: int, executor: str = "local") -> tuple[subprocess.Popen, Path, Path]:
    script, root, hold = tmp_path / "driver.py", tmp_path / "wf", tmp_path / "hold"
    script.write_text(textwrap.dedent(DRIVER))
    hold.write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(hold), str(ranks), executor], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180  # HTEX starts in 4-9 s on an idle 2-core machine, >60 s on a loaded one
    while not all((root / "long" / f"started.{r}").exists() for r in range(ranks)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the long task did not start"
        time.sleep(0.05)
    return proc, root, hold


def _wait_gone(driver_pid: int, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _task_processes(driver_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _parsl_processes(root: Path) -> list[int]:
    """Live HTEX worker pools of the workflow under ``root`` (their command line names its run dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(root / ".parsl") in cmd and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sig, executor", [(signal.SIGTERM, "local"), (signal.SIGINT, "local"),
                                           (signal.SIGTERM, "htex")])
def test_killing_the_driver_leaves_no_task_process_and_a_rerun_resumes(tmp_path: Path, sig: int,
                                                                       executor: str) -> None:
    """``htex``: ``cluster: {scheduler: local}``, Parsl's HighThroughputExecutor (the executor of the
    cluster schedulers) on this machine runs the first two tasks; the rerun (local executor) reuses them."""
    proc, root, hold = _start_driver(tmp_path, ranks=1, executor=executor)
    before = _task_processes(proc.pid)
    assert before, "the long task's process should be running"
    if executor == "htex":
        assert _parsl_processes(root), "the HTEX worker pool should be running"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "WorkflowInterrupted" in err
    assert _wait_gone(proc.pid, timeout=0.3) == []  # ended by the driver before it exited (not by the watchdog)
    assert _parsl_processes(root) == []
    assert (root / ".parsl").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["driver.py", "hold", "wf"]
    assert not (root / "long" / "DONE").exists()
    hold.unlink()  # the rerun: the finished tasks are reused, the interrupted one runs again
    out = run_workflow(_driver_tasks(str(hold)), root, progress=False)
    assert out.ok and out.reused == {"quick", "next"}
    assert [runs(root, n) for n in ("quick", "next", "long")] == [1, 1, 2]


def _driver_tasks(hold: str, ranks: int = 1) -> list[Task]:
    return [Task("quick", F + "add", {"value": 1}), Task("next", F + "add", {"value": 2}, deps=("quick",)),
            Task("long", F + "hold", {"while_exists": hold, "max_s": 120}, deps=("next",),
                 resources=Resources(mpi_ranks=ranks))]


def test_sigkill_of_the_driver_still_leaves_no_task_process(tmp_path: Path) -> None:
    """``kill -9`` gives the driver no chance to clean up: the worker's watchdog ends the task (and,
    with mpirun next to the interpreter, all its ranks)."""
    ranks = 2 if MPIRUN.exists() else 1
    proc, root, hold = _start_driver(tmp_path, ranks=ranks)
    assert len(_task_processes(proc.pid)) >= ranks
    proc.kill()
    proc.communicate(timeout=30)
    assert _wait_gone(proc.pid) == []


# ------------------------------------------------------------------------------------------ cluster section
def test_cluster_section_maps_to_parsl_providers(tmp_path: Path) -> None:
    from parsl.launchers import SimpleLauncher
    from parsl.providers import LSFProvider, PBSProProvider, SlurmProvider

    slurm = load_cluster({"scheduler": "slurm", "partition": "gpu", "account": "abc123", "walltime": "1-02:00",
                          "nodes_per_block": 2, "max_blocks": 4, "tasks_per_node": 4, "cores_per_task": 8,
                          "gpus_per_task": 1, "worker_init": ["module load cuda", "source venv/bin/activate"],
                          "scheduler_options": "#SBATCH --constraint=a100"})
    cfg = slurm.to_parsl_config(tmp_path / "run")
    (ex,) = cfg.executors
    p = ex.provider
    assert isinstance(p, SlurmProvider) and isinstance(p.launcher, SimpleLauncher)
    assert (p.partition, p.account, p.walltime, p.nodes_per_block, p.max_blocks) == ("gpu", "abc123", "26:00:00", 2, 4)
    assert p.worker_init.strip() == "module load cuda\nsource venv/bin/activate"
    assert "#SBATCH --constraint=a100" in p.scheduler_options
    assert ex.max_workers_per_node == 8 and ex.label == "mlpot"  # 4 tasks per node x 2 nodes, placed by srun
    assert cfg.run_dir == str(tmp_path / "run")
    assert slurm.task_prefix(Resources(mpi_ranks=4, gpus=4)) == [
        "srun", "--nodes=1", "--ntasks=4", "--cpus-per-task=2", "--exact", "--kill-on-bad-exit=1", "--gpus-per-task=1"]
    assert slurm.task_prefix(Resources())[-1] == "--gpus-per-task=1"  # the slot's GPU
    one_node = load_cluster({"scheduler": "slurm", "cores_per_task": 4}).to_parsl_config(tmp_path).executors[0]
    assert one_node.cores_per_worker == 4 and one_node.max_workers_per_node == float("inf")  # Parsl counts cores

    pbs = load_cluster({"scheduler": "pbs", "queue": "workq", "account": "proj", "walltime": "08:00:00",
                        "cores_per_node": 64, "gpus_per_node": 4, "gpus_per_task": 2, "cores_per_task": 16})
    ex = pbs.to_parsl_config(tmp_path / "run").executors[0]
    p = ex.provider
    assert isinstance(p, PBSProProvider) and (p.queue, p.account, p.walltime) == ("workq", "proj", "08:00:00")
    assert p.select_options == "ngpus=4" and p.cpus_per_node == 64
    assert list(ex.available_accelerators) == ["0,1", "2,3"] and ex.cores_per_worker == 16
    assert pbs.task_prefix(Resources(mpi_ranks=2)) == ["mpirun", "-n", "2"]
    assert pbs.task_problem(Resources(cores=32)).startswith("needs 32 cores, a task slot has cores_per_task=16")

    local = ClusterConfig(scheduler="local", gpus_per_task=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
        assert list(local.to_parsl_config(tmp_path / "run").executors[0].available_accelerators) == ["4,5", "6,7"]

    lsf = load_cluster({"scheduler": "LSF", "queue": "batch", "account": "chm101", "walltime": "00:30"})
    p = lsf.to_parsl_config(tmp_path / "run").executors[0].provider
    assert isinstance(p, LSFProvider) and (p.queue, p.project, p.walltime) == ("batch", "chm101", "00:30:00")
    assert lsf.effective_launcher == "mpirun"


def test_cluster_section_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "phase.yaml"
    path.write_text("cluster:\n  scheduler: slurm\n  partiton: gpu\n")
    with pytest.raises(ConfigError) as info:
        load_cluster(read_tree(path)["cluster"], source=str(path))
    assert str(info.value) == f"{path}: cluster.partiton: unknown key (did you mean `partition`?)"
    bad = [({"scheduler": "slurmm"}, "cluster.scheduler: expected one of slurm, pbs, lsf, local, found 'slurmm' "
                                     "(did you mean `slurm`?)"),
           ({"scheduler": "sge"}, "cluster.scheduler: expected one of slurm, pbs, lsf, local, found 'sge'"),
           ({"scheduler": "pbs", "walltime": "8h"}, "cluster.walltime: expected a walltime '[D-]HH:MM[:SS]'"),
           ({"scheduler": "pbs", "launcher": "srun"}, "cluster.launcher: srun needs scheduler slurm"),
           ({"scheduler": "pbs", "nodes_per_block": 2}, "cluster.nodes_per_block: blocks are single-node"),
           ({"scheduler": "slurm", "nodes_per_block": 2}, "cluster.tasks_per_node: required with launcher srun"),
           ({"scheduler": "slurm", "max_blocks": 0}, "cluster.max_blocks: expected"),
           ({}, "cluster.scheduler: missing required key")]
    for section, message in bad:
        with pytest.raises(ConfigError) as info:
            load_cluster(section)
        assert message in str(info.value), (message, str(info.value))
    assert load_cluster(None) is None

    from typing import Optional

    from mlpot.config.base import StrictModel, validate

    class PhaseInput(StrictModel):  # how a workflow input embeds the section
        cluster: Optional[ClusterConfig] = None

    with pytest.raises(ConfigError, match=r"^phase.yaml: cluster.acount: unknown key \(did you mean `account`\?\)$"):
        validate(PhaseInput, {"cluster": {"scheduler": "slurm", "acount": "x"}}, source="phase.yaml")
    assert validate(PhaseInput, {}).cluster is None


def test_no_parsl_output_on_stdout_and_run_dir_under_root(tmp_path: Path) -> None:
    code = ("from pathlib import Path; from mlpot.workflows import Task, run_workflow; "
            f"out = run_workflow([Task('a', '{F}add', {{}})], Path({str(tmp_path / 'wf')!r})); print(out.ok)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "True\n" and r.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf"]  # no runinfo/ in the current directory
    assert json.loads((tmp_path / "wf" / "a" / "result.json").read_text()) == {"value": 0}


def test_progress_bar_counts_tasks_and_shows_the_status_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    import mlpot.progress

    monkeypatch.setattr(mlpot.progress, "is_interactive", lambda stream=None: True)  # as on a terminal
    seen: list[list[str]] = []

    def status(results: dict[str, dict]) -> str:
        seen.append(sorted(results))
        return f"sum={sum(r['value'] for r in results.values())}"

    run_workflow(chain({}), tmp_path, status=status)
    err = capsys.readouterr().err
    assert "4/4" in err and "sum=123" in err and "workflow" in err
    assert seen[-1] == ["a", "b", "c", "d/x"]
    run_workflow(chain({}), tmp_path, status=status)  # all reused: nothing to run, no bar
    assert capsys.readouterr().err == ""


def test_one_driver_per_workflow_folder(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(f"{socket.gethostname()}:{os.getpid()}\n")  # a live driver (this process)
    with pytest.raises(WorkflowError, match="another workflow driver .* is running in this folder"):
        run_workflow(chain({}), tmp_path, progress=False)
    assert runs(tmp_path, "a") == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(f"{socket.gethostname()}:{dead.stdout.strip()}\n")  # a stale lock
    assert run_workflow(chain({}), tmp_path, progress=False).ok
    assert not (tmp_path / ".lock").exists()


def test_docs_name_every_cluster_key_and_their_examples_validate(tmp_path: Path) -> None:
    import re

    import yaml

    doc = (ROOT / "docs" / "workflows.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for key in ClusterConfig.known_keys():
        if key not in ("comment", "_comment"):
            assert f"`{key}`" in doc, f"docs/workflows.md lacks the cluster key {key}"
    blocks = [b for text in (doc, readme) for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "cluster:" in b]
    assert len(blocks) >= 4
    for block in blocks:
        cfg = load_cluster(yaml.safe_load(block)["cluster"], source="docs")
        cfg.to_parsl_config(tmp_path / "run")  # maps without submitting
    assert "## Workflows on a laptop or a cluster (Parsl)" in readme
    assert readme.index("## Workflows on a laptop or a cluster (Parsl)") < readme.index("## Architecture")
