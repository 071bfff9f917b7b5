"""One run per output folder: a second `mlcore train` on a folder in use is refused
naming the folder and the process that holds it; a lock left by a killed process is taken
over with a warning; the lock goes however a run ends."""
from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import mlcore
from conftest import ROOT, run_cli, tiny_config, write_yaml
from mlcore.engine.run_lock import RunLock
from mlcore.errors import MlcoreError
from mlcore.registry import Registry


def wait_for(cond, proc=None, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def config(tmp_path, name="run", **train):
    cfg = tiny_config(tmp_path / name)
    cfg["tensorboard"] = False
    cfg["train"].update(train)
    return cfg


def start_train(path, *extra):
    return subprocess.Popen([sys.executable, "-m", "mlcore", "train", str(path), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_on_a_folder_in_use_is_refused_naming_folder_and_process(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", config(tmp_path, epochs=500))
    run = tmp_path / "run"
    first = start_train(path)
    try:
        wait_for(lambda: (run / ".lock").is_file() and (run / "config.yaml").is_file(), first,
                 what="the lock")
        held = json.loads((run / ".lock").read_text())
        assert held["pid"] == first.pid and held["host"] == socket.gethostname()
        assert "train" in held["command"]
        second = run_cli("train", path)
        assert second.returncode == 2, second.stderr
        err = second.stderr
        assert "Traceback" not in err
        assert f"output_dir {str(run)!r} is in use by another training run" in err
        assert f"process {first.pid} on host {socket.gethostname()!r}" in err
        assert first.poll() is None  # the first run goes on, its lock untouched
        assert json.loads((run / ".lock").read_text())["pid"] == first.pid
    finally:
        first.kill()
        first.wait()


def test_a_run_killed_with_sigkill_leaves_a_stale_lock_that_resume_takes_over(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", config(tmp_path, epochs=2, checkpoint_every=2))
    run = tmp_path / "run"
    first = start_train(path)
    try:
        wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), first, what="a checkpoint")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == first.pid  # left behind
    resumed = run_cli("train", path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over the lock left by process {first.pid}" in resumed.stderr
    assert "no longer runs" in resumed.stderr
    assert not (run / ".lock").exists()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_a_stale_lock_naming_a_dead_pid_is_taken_over_with_a_warning(tmp_path):
    cfg = config(tmp_path, epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                           "started": "2020-01-01T00:00:00+00:00",
                                           "command": "mlcore train x"}))
    with pytest.warns(UserWarning, match=rf"took over the lock left by process {pid} on host .*"
                                         rf"no longer runs"):
        result = mlcore.build(cfg).fit()
    assert result["reason"] == "finished"
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / ".lock").exists()


def test_the_lock_is_gone_after_a_normal_end_and_after_an_error(tmp_path):
    cfg = config(tmp_path, epochs=1)
    mlcore.build(cfg).fit()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "run" / ".lock").exists()

    class Boom:
        calls = 0

        def __call__(self, logits, targets):
            Boom.calls += 1
            if Boom.calls == 3:
                raise MlcoreError("boom at step 3")
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)

    reg = Registry()
    reg.register("loss", "boom", Boom)
    cfg = {**config(tmp_path, "err", epochs=1), "loss": {"name": "boom"}}
    with pytest.raises(MlcoreError, match="boom at step 3"):
        mlcore.build(cfg, registry=reg).fit()
    assert (tmp_path / "err" / "config.yaml").is_file() and not (tmp_path / "err" / ".lock").exists()


def test_a_run_stopped_before_writing_leaves_no_folder(tmp_path):
    """The lock is taken before anything is written; when setup then fails, the folder
    made for it goes again (nothing half-written)."""
    cfg = config(tmp_path, "deep/run", epochs=1, amp="fp16")  # fp16 needs CUDA: refused during setup
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed with CUDA")
    with pytest.raises(MlcoreError, match="fp16 needs a CUDA device"):
        mlcore.build(cfg).fit()
    assert not (tmp_path / "deep").exists()


HOLDER = textwrap.dedent("""
    import os, sys, time
    from mlcore.engine.run_lock import RunLock
    RunLock(sys.argv[1]).acquire()
    child = os.fork()
    if child == 0:  # a worker forked by the run (as DataLoader workers are): it outlives a SIGKILLed parent
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_lock_ends_with_its_holder_even_when_it_forked_workers(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        lock = RunLock(folder)
        in_use = rf"{re.escape(repr(str(folder)))} is in use .*process {holder.pid} "
        with pytest.raises(MlcoreError, match=in_use):
            lock.acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        t = time.monotonic()
        with pytest.warns(UserWarning, match=rf"took over the lock left by process {holder.pid}"):
            lock.acquire()  # the forked worker still lives, but holds no lock
        assert time.monotonic() - t < 1.5
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
        lock.close()
        assert not (folder / ".lock").exists() and folder.is_dir()  # the folder was not made by this lock
    finally:
        os.kill(child, signal.SIGKILL)
        holder.kill()


def test_an_empty_lock_file_left_by_a_process_killed_while_creating_it_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text("")
    os.utime(folder / ".lock", (time.time() - 60, time.time() - 60))
    with pytest.warns(UserWarning, match="took over the lock left by a process that died while creating it"):
        with RunLock(folder):
            assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    assert not (folder / ".lock").exists()


def test_only_one_of_many_simultaneous_takeovers_wins(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(),
                                              "started": "2020-01-01T00:00:00+00:00", "command": "x"}))
    code = textwrap.dedent("""
        import sys, time
        from mlcore.engine.run_lock import RunLock
        from mlcore.errors import MlcoreError
        until = float(sys.argv[2])
        while time.time() < until:
            pass
        try:
            RunLock(sys.argv[1]).acquire()
        except MlcoreError:
            print("refused", flush=True)
            sys.exit(0)
        print("won", flush=True)
        time.sleep(5)
    """)
    go = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", code, str(folder), go], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        outcomes = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert outcomes == ["refused", "refused", "refused", "won"]
