"""The attack suite: each attack runs through ``kcode sandbox exec`` and through the ``bash``
tool (the ``run`` fixture is parametrized over both) and must fail, leaving the host as it
was. Limits come from the repository's tight profile (see conftest) so bombs end fast."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.sandbox.conftest import SECRET_KEY, SSH_SECRET, git, requires_bwrap, run_cli, run_tool, tree_digest

pytestmark = requires_bwrap


# -- the file system --------------------------------------------------------------------


def test_write_outside_repo_next_to_it(run, repo: Path, outside: Path) -> None:
    before = tree_digest(outside)
    result = run(f"echo pwned > {outside}/pwned.txt; echo pwned >> {outside}/keep.txt; rm -f {outside}/keep.txt")
    assert tree_digest(outside) == before
    assert (outside / "keep.txt").read_text() == "host data\n"
    assert result.exit_code != 0 or "pwned" not in (outside / "keep.txt").read_text()


def test_write_to_system_paths(run) -> None:
    marker = f"kcode-attack-{uuid.uuid4().hex}"
    result = run(f"echo x > /etc/{marker}; echo x > /usr/{marker}; echo x > /var/tmp/{marker}; echo x >> /etc/hosts")
    assert result.exit_code != 0
    assert "Read-only file system" in result.output
    for directory in ("/etc", "/usr", "/var/tmp"):
        assert not Path(directory, marker).exists()


def test_overwrite_git_hooks(run, repo: Path) -> None:
    before = tree_digest(repo / ".git")
    result = run(
        "printf '#!/bin/sh\\ntouch /tmp/owned\\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit;"
        " mkdir -p .git/hooks && cp /bin/true .git/hooks/post-checkout"
    )
    assert result.exit_code != 0
    assert "Read-only file system" in result.output
    assert tree_digest(repo / ".git") == before
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


def test_overwrite_git_config(run, repo: Path) -> None:
    config = (repo / ".git" / "config").read_text()
    result = run("git config core.hooksPath /tmp/evil; echo '[core] fsmonitor = touch /tmp/x' >> .git/config")
    assert result.exit_code != 0
    assert (repo / ".git" / "config").read_text() == config
    assert "hooksPath" not in git_config(repo)


def git_config(repo: Path) -> str:
    return subprocess.run(["git", "config", "--list"], cwd=repo, capture_output=True, text=True).stdout


def test_plant_a_sandbox_profile_in_dot_kcode(run, repo: Path) -> None:
    profile = repo / ".kcode" / "sandbox" / "workspace-write.toml"
    before = profile.read_text()
    result = run("echo 'network = true' > .kcode/sandbox/workspace-write.toml; echo 'sandbox = \"off\"' > .kcode/config.toml")
    assert result.exit_code != 0
    assert profile.read_text() == before
    assert not (repo / ".kcode" / "config.toml").exists()


def test_write_through_symlink_pointing_outside(run, repo: Path, outside: Path) -> None:
    before = tree_digest(outside)
    result = run(
        "echo pwned > escape/pwned.txt; echo pwned > escape/keep.txt;"
        " ln -s /etc/hostname hn && echo pwned > hn; ln -sfn /usr/local newlink && touch newlink/pwned"
    )
    assert result.exit_code != 0
    assert tree_digest(outside) == before
    assert not Path("/usr/local/pwned").exists()


def test_read_planted_secret_in_home(run, planted_home: Path) -> None:
    result = run(f"cat ~/.ssh/id_ed25519 {planted_home}/.ssh/id_ed25519 ~/.aws/credentials; ls -la ~")
    assert SSH_SECRET not in result.output
    assert result.output.count("No such file or directory") == 3


def test_read_other_users_home(run) -> None:
    """A secret in another account's home (created here when /home is writable)."""
    base = Path("/home")
    user_dir = base / f"kcode-victim-{uuid.uuid4().hex[:8]}"
    try:
        (user_dir / ".ssh").mkdir(parents=True)
    except OSError:
        user_dir = None
    try:
        if user_dir is not None:
            (user_dir / ".ssh" / "id_rsa").write_text(SSH_SECRET)
        result = run("ls -A /home; cat /home/*/.ssh/id_rsa; ls -A /root | grep -v -e .pyenv -e .rustup -e .cargo -e .nvm -e .local || true")
        assert SSH_SECRET not in result.output
        if user_dir is not None:
            assert user_dir.name not in result.output
    finally:
        if user_dir is not None:
            for path in sorted(user_dir.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            user_dir.rmdir()


def test_read_api_keys_from_environment(run) -> None:
    result = run("env; echo $OPENAI_API_KEY $GITHUB_TOKEN $MY_SERVICE_PASSWORD; cat /proc/self/environ")
    assert result.exit_code == 0
    assert SECRET_KEY not in result.output
    assert "PATH=" in result.output  # the allow-list still passes the harmless variables


def test_read_environ_of_pid_1_and_host_processes(run) -> None:
    host_pid = os.getpid()
    result = run(
        f"cat /proc/1/environ; cat /proc/{host_pid}/environ; for f in /proc/[0-9]*/environ; do cat $f; done;"
        " echo; echo PS_START; ps -eo comm; echo PS_END"
    )
    assert SECRET_KEY not in result.output
    visible = result.output.split("PS_START")[1].split("PS_END")[0].split()
    assert set(visible) <= {"COMMAND", "bash", "ps"}  # no host process is visible


# -- the network ------------------------------------------------------------------------


def test_connect_to_host_loopback_server(run) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        result = run(
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\";"
            f" curl -s -m 3 http://127.0.0.1:{port}/ && echo CONNECTED"
        )
    finally:
        stop.set()
        thread.join(2)
        server.close()
    assert "CONNECTED" not in result.output
    assert accepted == []


def test_connect_to_external_address(run) -> None:
    result = run(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 443), timeout=3); print('CONNECTED')\";"
        " curl -s -m 5 https://example.com/ -o /dev/null && echo CONNECTED; getent hosts example.com && echo RESOLVED"
    )
    assert "CONNECTED" not in result.output
    assert "RESOLVED" not in result.output
    assert "Network is unreachable" in result.output


# -- resources --------------------------------------------------------------------------


def test_fork_bomb(run) -> None:
    name = f"kbomb_{uuid.uuid4().hex[:12]}"
    # Start the bomb, let it grow for 2 s while pid 1 waits on a FIFO (no fork needed),
    # then count the processes of the namespace with builtins only.
    script = (
        f"mkfifo /tmp/wait && exec 3<>/tmp/wait; {name}(){{ {name}|{name}& }}; {name};"
        " read -t 2 -u 3; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo COUNT=$n"
    )
    started = time.monotonic()
    result = run(script, timeout=10)
    assert time.monotonic() - started < 30
    count = int(result.output.split("COUNT=")[1].split()[0])
    assert count <= 64
    assert _no_processes_matching(name)


_FORK_MANY = """
import os, time
children = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:  # no retry, unlike bash: the cap answers at once
        break
    if pid == 0:
        time.sleep(3)
        os._exit(0)
    children += 1
print("FORKED=%d COUNT=%d" % (children, sum(name.isdigit() for name in os.listdir("/proc"))))
"""


def test_process_count_is_capped(run) -> None:
    result = run(f"python3 -c '{_FORK_MANY}'")
    assert "COUNT=" in result.output, result.output
    forked = int(result.output.split("FORKED=")[1].split()[0])
    count = int(result.output.split("COUNT=")[1].split()[0])
    assert forked < 200 and count <= 64


def _no_processes_matching(marker: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if marker not in ps:
            return True
        time.sleep(0.2)
    return False


def test_memory_bomb(run) -> None:
    result = run("python3 -c 'x = bytearray(2 * 1024**3); print(\"ALLOCATED\")'; python3 -c '\nl = []\nwhile True: l.append(bytearray(50 * 1024**2))'")
    assert "ALLOCATED" not in result.output
    assert "MemoryError" in result.output
    assert result.exit_code != 0


def test_disk_filling_write(run, repo: Path) -> None:
    result = run(
        "dd if=/dev/zero of=big.bin bs=1M count=100; for i in 1 2 3; do dd if=/dev/zero of=/tmp/f$i bs=1M count=8; done"
    )
    assert "File size limit exceeded" in result.output  # RLIMIT_FSIZE in the repository
    assert "No space left on device" in result.output  # the private /tmp is size-capped
    assert (repo / "big.bin").stat().st_size <= 10 * 1024**2
    (repo / "big.bin").unlink()


def test_cpu_spin_past_the_limit(run) -> None:
    started = time.monotonic()
    result = run("while :; do :; done", timeout=30)
    assert not result.timed_out  # the CPU limit ended it, not the wall clock
    assert result.exit_code != 0
    assert time.monotonic() - started < 20


def test_background_process_outliving_parent(run, repo: Path) -> None:
    result = run("(sleep 1; echo escaped > bg1.txt) & nohup sh -c 'sleep 1; echo escaped > bg2.txt' >/dev/null 2>&1 & disown; echo started")
    assert "started" in result.output
    time.sleep(2.5)
    assert not (repo / "bg1.txt").exists()
    assert not (repo / "bg2.txt").exists()


def test_setsid_escape(run, repo: Path) -> None:
    result = run("setsid -f sh -c 'sleep 1; echo escaped > setsid.txt'; setsid sh -c 'sleep 1; echo escaped > setsid2.txt' & echo started")
    assert "started" in result.output
    time.sleep(2.5)
    assert not (repo / "setsid.txt").exists()
    assert not (repo / "setsid2.txt").exists()


def test_kill_all_processes(run) -> None:
    canary = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        run("kill -9 -1; kill -9 1; pkill -9 -f sleep; echo done")
        time.sleep(0.3)
        assert canary.poll() is None  # the host's process survived
    finally:
        canary.send_signal(signal.SIGKILL)
        canary.wait()


def test_wall_clock_timeout_kills_the_tree(run, repo: Path) -> None:
    started = time.monotonic()
    result = run("(sleep 3; echo late > late.txt) & sleep 30", timeout=1)
    assert result.timed_out
    assert time.monotonic() - started < 15
    time.sleep(3)
    assert not (repo / "late.txt").exists()


# -- devices, mounts, privileges -------------------------------------------------------


def test_write_to_devices(run) -> None:
    result = run(
        "ls /dev; mknod /tmp/disk b 8 0 && echo MKNOD_OK; dd if=/dev/zero of=/dev/sda count=1 2>&1;"
        " dd if=/dev/zero of=/dev/vda count=1; echo 1 > /proc/sys/kernel/sysrq && echo SYSRQ_OK; echo x > /dev/kmsg"
    )
    assert "MKNOD_OK" not in result.output
    assert "SYSRQ_OK" not in result.output
    listing = result.output.split("dd:")[0]
    for block_device in ("sda", "vda", "nvme0n1", "mem", "kmem"):
        assert f"\n{block_device}\n" not in f"\n{listing}"


def test_mount_attempts(run) -> None:
    result = run(
        "mount -t tmpfs none /mnt && echo MOUNT_OK; mount -o remount,rw / && echo REMOUNT_OK;"
        " mount --bind /tmp /usr && echo BIND_OK; umount /root && echo UMOUNT_OK;"
        " unshare -r -m sh -c 'mount -t tmpfs none /etc' && echo USERNS_OK; touch /usr/kcode-pwn && echo TOUCH_OK"
    )
    for marker in ("MOUNT_OK", "REMOUNT_OK", "BIND_OK", "UMOUNT_OK", "USERNS_OK", "TOUCH_OK"):
        assert marker not in result.output
    assert not Path("/usr/kcode-pwn").exists()


PTRACE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
print("ppid", os.getppid())
for pid in [os.getppid(), int(sys.argv[1])]:
    if pid == 0:
        continue  # the parent (bwrap, kcode) is outside the pid namespace: not even visible
    rc = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    print("ATTACHED" if rc == 0 else f"ptrace({pid}) failed errno={ctypes.get_errno()}")
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        print("VISIBLE", name, open(f"/proc/{name}/cmdline").read())
"""


def test_ptrace_of_the_parent(run, repo: Path) -> None:
    """The command (pid 1 of its namespace) cannot see, let alone trace, whoever started it."""
    (repo / "ptrace_attack.py").write_text(PTRACE)
    result = run(f"exec python3 ptrace_attack.py {os.getpid()}")
    assert "ppid 0" in result.output
    assert "ATTACHED" not in result.output
    assert "VISIBLE" not in result.output


def test_no_capabilities_inside(run) -> None:
    result = run("grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status; chroot / true && echo CHROOT_OK; hostname pwned && echo HOSTNAME_OK")
    assert "CapEff:\t0000000000000000" in result.output
    assert "CapBnd:\t0000000000000000" in result.output
    assert "NoNewPrivs:\t1" in result.output
    assert "CHROOT_OK" not in result.output
    assert "HOSTNAME_OK" not in result.output


def test_read_only_profile_blocks_repo_writes(run, repo: Path) -> None:
    result = run("echo changed > README.md; touch new.txt", profile="read-only")
    assert result.exit_code != 0
    assert (repo / "README.md").read_text() == "hello\n"
    assert not (repo / "new.txt").exists()


def test_read_home_secrets_when_the_repository_is_inside_the_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most users' repositories live in their home: the home is still hidden around it.
    (A home under /tmp proves nothing: the private /tmp hides it anyway.)"""
    home = Path("/home") / f"kcode-user-{uuid.uuid4().hex[:8]}"
    try:
        (home / ".ssh").mkdir(parents=True)
    except OSError:
        pytest.skip("/home is not writable here")
    try:
        (home / ".ssh" / "id_ed25519").write_text(SSH_SECRET)
        monkeypatch.setenv("HOME", str(home))
        repo = home / "src" / "project"
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        (repo / "README.md").write_text("hello\n")
        for runner in (run_cli, run_tool):
            result = runner(repo, f"cat README.md; cat {home}/.ssh/id_ed25519 ~/.ssh/id_ed25519; ls -A {home}; echo x > {home}/planted")
            assert "hello" in result.output  # the repository is there
            assert SSH_SECRET not in result.output and ".ssh" not in result.output.splitlines(), result.output
            assert not (home / "planted").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)
