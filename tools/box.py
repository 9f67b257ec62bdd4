"""Run one learner's notebook in a box of its own: what it can see, write, reach and use is limited by the OS.

    python tools/box.py --check        # can boxes be made on this machine? (prints why not)

A box is made of Linux namespaces, as otter-grader's or Gradescope's containers are made of them, without a
container runtime: `unshare` (util-linux) starts a process (`init`, below) in new mount, PID, network, IPC and UTS
namespaces. `init` builds a root of its own on a tmpfs holding only what a notebook needs, read-only: the system
(/usr, /lib, /etc ...), this Python and its virtual environment, and /box with the notebook, the teacher's utils.py,
names.txt and the fresh inputs of the hidden re-checks. Writable: /box/out, /tmp and /dev/shm, tmpfs of fixed sizes
that vanish with the box. Nothing else exists in it: not the repository (lecture.py, with every solution; the
grader), not the class folder, grades.csv, the gradebook or other learners' copies. Then, as a user of its own
(uid BASE_UID + slot, which owns nothing outside the box) and under resource limits (setrlimit: address space per
process, processes and threads, file size, CPU time), the notebook runs with nbclient, each cell under the cell time
limit. The network namespace has a loopback only (the kernel talks to nbclient over it): nothing outside is
reachable. `init` is the box's PID 1: when the notebook is done, or its time is up, it kills every process in the
box (detached ones too: a PID namespace dies with its first process), copies /box/out's regular files out (capped
in size) and exits. The teacher's process reads only those files, as data.

An audit hook (Python's sys.addaudithook, installed in the kernel before any cell runs) reports what the OS refused
or what a notebook should never do: a write outside /box/out and /tmp, a network connection, a new process, a read of
grader files. The limits stop the act; the hook only says it happened (a learner can silence the report of their
own box, never anyone else's, and never the limits).

Run as root (containers, CI, a grading VM), the box's user is a uid of its own; run as another user, a user
namespace maps that user to root inside the box instead (unprivileged user namespaces must be enabled), and the
read-only mounts are what keeps files safe.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Defaults a teacher can change (tools/grade.py --memory, --processes; README, "For teachers").
LIMITS = dict(memory_mb=2048, processes=128, file_mb=64, tmp_mb=512, out_mb=256, cpu_s=3600)
# memory_mb: the box's resident memory, all its processes together (a cgroup's memory limit), where the machine has
# a writable cgroup memory controller; elsewhere the address space of each process (setrlimit), which counts the
# ~1.3 GB of libraries torch maps. processes: processes and threads of the box's user.
BASE_UID = 61000  # box slot i runs as uid 61000 + i: a process limit counts per uid, so boxes do not share one
OUT_CAP = 128 * 2**20  # bytes of /box/out copied back at most
AUDIT_TAG = "BACKPROP-NINJA-BOX "  # lines of the audit hook, in the box's log

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")

# Run by the kernel before any cell (ipykernel's exec_files), from the read-only /box/.box.
AUDIT_HOOK = r'''
import os as _os, sys as _sys
def _box_audit():
    import json, os
    fd = os.dup(2)
    writable = ("/box/out/", "/tmp/", "/dev/shm/", "/dev/null", "/proc/self/")
    # a venv under /tmp (a clone there) is a host folder seen through the box's /tmp: writing there is reaching out
    protected = tuple({"/tmp/" + p[5:].split("/")[0] + "/" for p in (_sys.prefix, _sys.base_prefix, _sys.exec_prefix)
                       if p.startswith("/tmp/")})
    seen = set()
    def report(kind, what):
        key = (kind, what)
        if key not in seen and len(seen) < 200:
            seen.add(key)
            try:
                os.write(fd, (%r + json.dumps({"kind": kind, "what": what}) + "\n").encode())
            except OSError:
                pass
    def hook(event, args):
        try:
            if event == "open" and isinstance(args[0], (str, bytes)):
                path, mode, flags = args
                path = os.fsdecode(path)
                full = os.path.normpath(os.path.join(os.getcwd(), path))
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
                inside = ((full + "/").startswith(writable) or full.startswith(writable)) and not (
                    protected and (full + "/").startswith(protected))
                if writing and not inside:
                    report("write", full)
                elif any(s in os.path.basename(full) for s in ("lecture", "hidden_checks", "grade.py", "gradebook")):
                    report("read", full)
            elif event in ("socket.connect", "socket.sendto", "socket.getaddrinfo"):
                where = args[1] if event != "socket.getaddrinfo" else (args[0], args[1])
                if event != "socket.connect" or not str(where).startswith(("('127.0.0.1'", "('::1'")):
                    report("network", str(where)[:200])
            elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork"):
                report("process", str(args[:2] if event != "os.fork" else "fork")[:200])
        except Exception:
            pass
    _sys.addaudithook(hook)
_box_audit()
del _box_audit
''' % AUDIT_TAG


class BoxUnavailable(RuntimeError):
    """Boxes cannot be made on this machine (the message says why and what to do)."""


def available() -> str | None:
    """None when a box can be made here; else why not."""
    if sys.platform != "linux":
        return "boxes need Linux namespaces (this is " + sys.platform + ")"
    if shutil.which("unshare") is None:
        return "the `unshare` command (util-linux) is missing"
    args = _unshare() + ["true"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`{' '.join(args)}` failed: {e}"
    if proc.returncode != 0:
        return (f"`{' '.join(args)}` failed: {proc.stderr.strip()} (run as root, or enable unprivileged user "
                "namespaces: sysctl kernel.unprivileged_userns_clone=1)")
    return None


def _unshare() -> list[str]:
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]


# ---------------------------------------------------------------------------------------------- the teacher's side

def _memory_cgroup(memory_mb: int) -> Path | None:
    """A new cgroup whose memory is capped at memory_mb (cgroup v1 or v2), or None where none can be made."""
    name = f"backprop-ninja-box-{os.getpid()}-{time.monotonic_ns()}"
    for parent, limit in ((Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"), (Path("/sys/fs/cgroup"), "memory.max")):
        if not (parent / limit).exists() and not (parent / "cgroup.procs").exists():
            continue
        try:
            if limit == "memory.max":
                control = parent / "cgroup.subtree_control"
                if "memory" not in control.read_text():
                    control.write_text("+memory")
            group = parent / name
            group.mkdir()
            (group / limit).write_text(str(memory_mb * 2**20))
            if limit == "memory.limit_in_bytes" and (group / "memory.memsw.limit_in_bytes").exists():
                (group / "memory.memsw.limit_in_bytes").write_text(str(memory_mb * 2**20))
            return group
        except OSError:
            continue
    return None


def _memory_hit(group: Path | None) -> bool:
    """Did the box reach its memory limit (an allocation refused, or a process killed for memory)?"""
    if group is None:
        return False
    for f, key in (("memory.failcnt", None), ("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill"),
                   ("memory.events", "max")):
        try:
            text = (group / f).read_text()
        except OSError:
            continue
        values = [int(v) for k, v in (l.split() for l in text.splitlines()) if k == key] if key else [int(text)]
        if any(values):
            return True
    return False


def _remove_cgroup(group: Path | None) -> None:
    for _ in range(50):  # the box's processes are gone; the kernel may take a moment to release the group
        try:
            if group is not None:
                group.rmdir()
            return
        except OSError:
            time.sleep(0.1)

def run(files: dict[str, Path | bytes], *, cell_timeout: int, timeout: int, slot: int = 0,
        limits: dict | None = None) -> dict:
    """Run `files["notebook.ipynb"]` in a new box holding `files` (name -> path or bytes) under /box.

    Returns {"files": {name: bytes} from /box/out, "status": "done" | "time limit" | "box failed", "log": text,
    "audit": [events], "seconds": s}. Never runs learner code in this process.
    """
    limits = {**LIMITS, **(limits or {})}
    with tempfile.TemporaryDirectory(prefix="backprop-ninja-box-") as tmp:
        tmp = Path(tmp)  # mode 700, root's: the box's user cannot see it
        stage, root, outbox = tmp / "stage", tmp / "root", tmp / "outbox"
        for d in (stage, root, outbox):
            d.mkdir()
        for name, content in files.items():
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else Path(content).read_bytes())
        (stage / "out").mkdir()
        (stage / ".box").mkdir()
        shutil.copyfile(__file__, stage / ".box" / "box.py")
        (stage / ".box" / "audit.py").write_text(AUDIT_HOOK)  # run by the kernel before any cell
        for p in stage.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        group = _memory_cgroup(limits["memory_mb"])
        spec = dict(stage=str(stage), root=str(root), outbox=str(outbox), cell_timeout=cell_timeout,
                    cgroup=str(group) if group else None,
                    timeout=timeout, uid=BASE_UID + slot if os.geteuid() == 0 else 0, limits=limits,
                    python=sys.executable, prefixes=sorted({sys.prefix, sys.base_prefix, sys.exec_prefix}))
        log = tmp / "init.log"
        start = time.monotonic()
        with open(log, "wb") as f:
            proc = subprocess.Popen(_unshare() + [sys.executable, __file__, "--init", json.dumps(spec)],
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(timeout + 60)  # init keeps the time limit itself; this is the backstop
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # --kill-child: init, and so the whole box, dies with it
                proc.wait()
        result = {"files": {}, "seconds": time.monotonic() - start, "memory_limit_hit": _memory_hit(group),
                  "memory_limit": "box" if group else "process address space"}
        _remove_cgroup(group)
        for p in sorted(outbox.rglob("*")):
            if p.is_file() and not p.is_symlink():
                result["files"][str(p.relative_to(outbox))] = p.read_bytes()
        text = log.read_bytes()[-2_000_000:].decode("utf-8", "replace")
        status = json.loads(result["files"].pop(".init.json", b"{}") or b"{}")
        result["status"] = status.get("status", "box failed")
        result["log"] = text
        result["audit"] = [json.loads(l[len(AUDIT_TAG):]) for l in text.splitlines() if l.startswith(AUDIT_TAG)
                           and _is_json(l[len(AUDIT_TAG):])]
        return result


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------- init: the box's PID 1

def _libc_mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _bind(src: str, dst: Path, writable: bool = False) -> None:
    if os.path.isdir(src):
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.touch()
    _libc_mount(src, str(dst), None, MS_BIND | MS_REC)
    _libc_mount(None, str(dst), None, MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if writable else MS_RDONLY))


def _tmpfs(dst: Path, size_mb: int, mode: int, uid: int = 0) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    _libc_mount("tmpfs", str(dst), "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode={mode:o},uid={uid},gid={uid}")


def _loopback_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # SIOCSIFFLAGS: IFF_UP | IFF_LOOPBACK | IFF_RUNNING
        fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", 0x1 | 0x8 | 0x40) + b"\0" * 22)
    finally:
        s.close()


def _build_root(spec: dict) -> Path:
    root, limits = Path(spec["root"]), spec["limits"]
    _libc_mount("tmpfs", str(root), "tmpfs", MS_NOSUID, "size=16m,mode=755")
    for path in SYSTEM:
        if os.path.islink(path):
            (root / path.lstrip("/")).symlink_to(os.readlink(path))
        elif os.path.isdir(path):
            _bind(path, root / path.lstrip("/"))
    _tmpfs(root / "tmp", limits["tmp_mb"], 0o1777)  # before the prefixes: a venv may live under /tmp (a CI clone)
    for prefix in spec["prefixes"]:  # this Python and its venv, at their own paths
        if not any(prefix == s or prefix.startswith(s + "/") for s in SYSTEM):
            _bind(prefix, root / prefix.lstrip("/"))
    _tmpfs(root / "dev", 1, 0o755)
    for d in DEVICES:
        _bind(f"/dev/{d}", root / "dev" / d, writable=True)
    _tmpfs(root / "dev" / "shm", 64, 0o1777)
    (root / "proc").mkdir()
    _libc_mount("proc", str(root / "proc"), "proc", MS_NOSUID | MS_NODEV)
    _bind(spec["stage"], root / "box")
    _tmpfs(root / "box" / "out", limits["out_mb"], 0o755, spec["uid"])
    return root


def _limit(limits: dict, cgroup: bool) -> None:
    mb = 2**20
    address_space = (limits["memory_mb"] + 8192) if cgroup else limits["memory_mb"]  # with a cgroup: a backstop
    for res, value in ((resource.RLIMIT_AS, address_space * mb), (resource.RLIMIT_NPROC, limits["processes"]),
                       (resource.RLIMIT_FSIZE, limits["file_mb"] * mb), (resource.RLIMIT_CPU, limits["cpu_s"]),
                       (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def init(spec: dict) -> int:
    """PID 1 of a new box (run by `unshare`, as root of its namespaces): build the root, run the notebook as the
    box's user, keep the time limit, kill everything, copy /box/out out."""
    status = "box failed"
    try:
        if spec.get("cgroup"):
            Path(spec["cgroup"], "cgroup.procs").write_text("0")  # this process, so all the box's processes
        root = _build_root(spec)
        _loopback_up()
        env = {"PATH": f"{Path(spec['python']).parent}:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
               "IPYTHONDIR": "/tmp/.ipython", "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter-runtime",
               "JUPYTER_CONFIG_DIR": "/tmp/.jupyter", "JUPYTER_DATA_DIR": "/tmp/.jupyter-data",
               "MPLCONFIGDIR": "/tmp/.matplotlib", "XDG_CACHE_HOME": "/tmp/.cache", "PYTHONDONTWRITEBYTECODE": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TORCH_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        uid = spec["uid"]
        pid = os.fork()
        if pid == 0:  # the box's user, in its own root
            try:
                os.chroot(root)
                os.chdir("/box")
                _limit(spec["limits"], bool(spec.get("cgroup")))
                if uid:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                os.execve(spec["python"], [spec["python"], "/box/.box/box.py", "--runner", json.dumps(spec)], env)
            finally:
                os._exit(127)
        deadline = time.monotonic() + spec["timeout"]
        status = "time limit"
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                status = "done"
                break
            time.sleep(0.2)
        try:
            os.kill(-1, signal.SIGKILL)  # every other process in the box, the detached ones too
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        _copy_out(root / "box" / "out", Path(spec["outbox"]))
    except Exception as e:  # say why in the log: the teacher's process reports "box failed"
        print(f"box init failed: {type(e).__name__}: {e}", flush=True)
    Path(spec["outbox"], ".init.json").write_text(json.dumps({"status": status}))
    return 0


def _copy_out(src: Path, dst: Path) -> None:
    """Regular files only, never following a link, OUT_CAP bytes in all."""
    left = OUT_CAP
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_size > left:
                    continue
                data = os.read(fd, info.st_size)
            finally:
                os.close(fd)
            left -= len(data)
            target = dst / os.path.relpath(path, src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


# ---------------------------------------------------------------------------------------------- the runner, in the box

def runner(spec: dict) -> int:
    """Execute /box/notebook.ipynb cell by cell, as the box's user; write /box/out/executed.ipynb and events.json.

    A cell past the cell time limit is interrupted; one that ignores the interrupt, or kills the kernel, costs a new
    kernel, in which the cells that ran before it run again (their outputs kept from the first run), so each later
    check still finds what it needs."""
    import asyncio

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read("/box/notebook.ipynb", as_version=4)
    events: list[dict] = []
    client = NotebookClient(nb, timeout=spec["cell_timeout"], interrupt_on_timeout=True, allow_errors=True,
                            kernel_name="python3", record_timing=False, iopub_timeout=10,
                            raise_on_iopub_timeout=False, shutdown_kernel="immediate",
                            error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                                              "traceback": [f"CellTimeoutError: this cell ran past the time limit of "
                                                            f"{spec['cell_timeout']} s and was stopped"]},
                            extra_arguments=["--HistoryManager.hist_file=:memory:",
                                             '--IPKernelApp.exec_files=["/box/.box/audit.py"]'],
                            resources={"metadata": {"path": "/box"}})

    replies: dict[int, dict] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: replies.__setitem__(cell_index, execute_reply)

    async def responsive() -> bool:
        msg_id = client.kc.execute("pass", silent=True, store_history=False)
        deadline = time.monotonic() + 5  # an interrupted kernel answers at once; one that ignores it never does
        while time.monotonic() < deadline:
            try:
                msg = await client.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    async def main() -> None:
        i, ran = 0, []
        while i < len(nb.cells):
            async with client.async_setup_kernel():
                for j in ran:  # a new kernel: what ran before runs again, silently
                    await client.async_execute_cell(nbformat.from_dict(dict(nb.cells[j], outputs=[])), j)
                while i < len(nb.cells):
                    cell, index = nb.cells[i], i
                    i += 1
                    if cell.cell_type != "code":
                        continue
                    start = time.monotonic()
                    try:
                        await client.async_execute_cell(cell, index, execution_count=len(ran) + 1)
                    except DeadKernelError:
                        events.append({"cell": index, "event": "kernel died"})
                        cell.outputs.append(nbformat.v4.new_output(
                            "error", ename="DeadKernelError", evalue="", traceback=[
                                "DeadKernelError: the kernel died in this cell (out of memory, or it ended itself); "
                                "the cells before it were run again in a new kernel"]))
                        break
                    errors = [o for o in cell.outputs if o.output_type == "error"]
                    if replies.get(index, {}).get("content", {}).get("ename") == "CellTimeoutError":
                        cell.outputs.append(nbformat.v4.new_output("error", **client.error_on_timeout))
                        events.append({"cell": index, "event": "time limit", "seconds": round(time.monotonic() - start)})
                        if not await responsive():
                            events.append({"cell": index, "event": "ignored the interrupt"})
                            break
                        continue
                    for o in errors:
                        text = f"{o.ename}: {o.evalue}"
                        if o.ename == "MemoryError" or "can't allocate memory" in text or "not enough memory" in text:
                            events.append({"cell": index, "event": "memory limit"})
                        elif "Resource temporarily unavailable" in text or "can't start new thread" in text:
                            events.append({"cell": index, "event": "process limit"})
                    ran.append(index)

    try:
        asyncio.run(main())
    finally:
        nbformat.write(nb, "/box/out/executed.ipynb")
        Path("/box/out/events.json").write_text(json.dumps(events))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--init"]:
        return init(json.loads(argv[1]))
    if argv[:1] == ["--runner"]:
        return runner(json.loads(argv[1]))
    if argv[:1] == ["--check"]:
        why = available()
        print(why or "boxes can be made here")
        return 1 if why else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
