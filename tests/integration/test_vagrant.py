"""The training VM (issue 9): the Vagrantfile as Vagrant itself reads it, and its provisioning run twice.

Nothing here boots a VM or downloads a box. Vagrant runs in an empty network namespace (so a
network call would fail the test) with a throwaway VAGRANT_HOME; the provisioning script runs on
this machine with its venv, `podlab` link and login welcome redirected into a temporary directory.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
GUEST_DIR = "/home/vagrant/podlab"
BOX = "debian/bookworm64"
WELCOME_COMMANDS = ("sudo podlab up", "sudo podlab tui", "sudo podlab exercise start 01",
                    "sudo podlab down --all")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".vagrant", "__pycache__", "*.egg-info",
                                     ".pytest_cache", ".hypothesis", "out")

# Loads the Vagrantfile through Vagrant's own loader (merged per machine and provider, finalized,
# with the provider plugins' config classes) and prints what the tests check, as JSON.
DUMP_RB = r"""
require "json"
require "vagrant"
env = Vagrant::Environment.new(cwd: ARGV[0])
vagrantfile = env.vagrantfile
out = {}
vagrantfile.machine_names.each do |name|
  machine = out[name.to_s] = {}
  %i[virtualbox libvirt].each do |provider|
    config = vagrantfile.machine_config(name, provider, env.boxes, nil, false)[:config]
    settings = config.vm.get_provider_config(provider)
    machine[provider.to_s] =
      if provider == :virtualbox
        {"customize" => settings.customizations}
      else
        {"memory" => settings.memory, "cpus" => settings.cpus, "driver" => settings.driver}
      end
    machine["box"] = config.vm.box
    machine["synced_folders"] = config.vm.synced_folders.values
    machine["provisioners"] = config.vm.provisioners.map do |p|
      {"type" => p.type, "path" => p.config.path, "args" => p.config.args}
    end
    machine["networks"] = config.vm.networks.map { |kind, options| {"kind" => kind, "options" => options} }
  end
end
puts JSON.generate(out)
"""


def _apt_install(packages: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                          capture_output=True, text=True, env=env)


def _installed(package: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in status.stdout


@pytest.fixture(scope="module")
def vagrant_installed() -> None:
    """Debian's vagrant, plus vagrant-libvirt so the libvirt settings are checked by their own plugin."""
    packages = ["vagrant", "vagrant-libvirt"]
    if all(_installed(p) for p in packages):
        return
    done = _apt_install(packages)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        done = _apt_install(packages)
    if done.returncode != 0 and "Unable to locate package" in done.stderr:
        pytest.skip(f"apt has no vagrant package here: {done.stderr.strip()}")
    assert done.returncode == 0, f"apt-get install {' '.join(packages)} failed:\n{done.stderr}"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the project, so Vagrant's .vagrant/ dir and pip's egg-info stay out of the checkout."""
    copy = tmp_path / "podlab"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE, symlinks=True)
    return copy


def _vagrant_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODLAB_", "VAGRANT_"))}
    env.update(VAGRANT_HOME=str(tmp_path / "vagrant-home"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_BOX_UPDATE_CHECK_DISABLE="1", **extra)
    return env


def _offline(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs argv in a fresh, empty network namespace: it cannot reach any network."""
    return subprocess.run(["unshare", "--net", "--", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("vms", ["1", "2"])
def test_vagrant_validates_the_vagrantfile_offline(vagrant_installed: None, project: Path,
                                                   tmp_path: Path, vms: str) -> None:
    env = _vagrant_env(tmp_path, PODLAB_VMS=vms)
    ignoring = _offline(["vagrant", "validate", "--ignore-provider"], project, env)
    assert ignoring.returncode == 0, ignoring.stdout + ignoring.stderr
    assert "Vagrantfile validated successfully" in ignoring.stdout
    # And with the libvirt provider's own validation (VirtualBox is not installed here).
    libvirt = _offline(["vagrant", "validate"], project, dict(env, VAGRANT_DEFAULT_PROVIDER="libvirt"))
    assert libvirt.returncode == 0, libvirt.stdout + libvirt.stderr


def _evaluated(project: Path, tmp_path: Path, **extra: str) -> dict:
    script = tmp_path / "dump.rb"
    script.write_text(DUMP_RB)
    done = _offline(["ruby", str(script), str(project)], project, _vagrant_env(tmp_path, **extra))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _virtualbox_setting(customize: list, flag: str) -> int:
    values = [int(args[3]) for _, args in customize if args[:1] == ["modifyvm"] and args[2] == flag]
    assert values, f"no VirtualBox {flag} in {customize}"
    return values[-1]


def _check_machine(name: str, machine: dict) -> None:
    assert machine["box"] == BOX, name
    libvirt = machine["libvirt"]
    assert libvirt["memory"] >= 4096 and libvirt["cpus"] >= 2, (name, libvirt)
    customize = machine["virtualbox"]["customize"]
    assert _virtualbox_setting(customize, "--memory") >= 4096, name
    assert _virtualbox_setting(customize, "--cpus") >= 2, name

    enabled = [f for f in machine["synced_folders"] if not f.get("disabled")]
    assert len(enabled) == 1, (name, machine["synced_folders"])
    folder = enabled[0]
    assert (folder["hostpath"], folder["guestpath"], folder.get("type")) == (".", GUEST_DIR, "rsync")
    assert ".venv/" in folder["rsync__exclude"], "the host's venv must not overwrite the guest's"

    # One shell provisioner: our script, told where the synced project is.
    assert machine["provisioners"] == [{"type": "shell", "path": "scripts/provision.sh",
                                        "args": [GUEST_DIR]}], name


def test_vagrantfile_settings_as_vagrant_evaluates_them(vagrant_installed: None, project: Path,
                                                        tmp_path: Path) -> None:
    single = _evaluated(project, tmp_path)
    assert list(single) == ["podlab"]
    _check_machine("podlab", single["podlab"])
    assert single["podlab"]["libvirt"]["driver"] == "kvm"


def test_two_vm_layout_for_trainers(vagrant_installed: None, project: Path, tmp_path: Path) -> None:
    pair = _evaluated(project, tmp_path, PODLAB_VMS="2")
    assert sorted(pair) == ["podlab-1", "podlab-2"]
    addresses = []
    for name, machine in pair.items():
        _check_machine(name, machine)
        private = [n["options"]["ip"] for n in machine["networks"] if n["kind"] == "private_network"]
        assert len(private) == 1, (name, machine["networks"])
        addresses += private
    assert len(set(addresses)) == 2, addresses


def _stdout_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.strip()]


def _fingerprint(paths: list[Path]) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each path itself, so a re-created link or a re-touched file shows."""
    return {str(p): (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in paths}


def test_provisioning_runs_twice_and_the_second_run_changes_nothing(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "provisioning installs system packages: run as root, as CI does"
    # The project is reached through a symlink, as a checkout often is; paths must still compare equal.
    real = tmp_path / "real"
    real.mkdir()
    shutil.copytree(ROOT, real / "podlab", ignore=COPY_IGNORE, symlinks=True)
    (tmp_path / "link").symlink_to(real)
    project = tmp_path / "link" / "podlab"
    venv, bin_dir, motd = tmp_path / "link" / "venv", tmp_path / "bin", tmp_path / "motd" / "60-podlab"
    bin_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODLAB_")}
    env.update(PODLAB_VENV=str(venv), PODLAB_BIN=str(bin_dir / "podlab"), PODLAB_MOTD=str(motd))
    argv = ["bash", str(project / "scripts" / "provision.sh"), str(project)]

    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert f"install: virtual environment in {venv}" in out
    assert "install: podlab and its Python packages" in out
    assert f"install: podlab is on PATH at {bin_dir / 'podlab'}" in out
    assert f"provision: login welcome installed at {motd}" in out
    assert (bin_dir / "podlab").resolve() == (venv / "bin" / "podlab").resolve()
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", "import lab, tui"],
                              capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    welcome = subprocess.run([str(motd)], capture_output=True, text=True, check=True).stdout
    for command in WELCOME_COMMANDS:
        assert command in welcome

    watched = [venv / ".podlab-installed", venv / "bin" / "python", venv / "bin" / "podlab",
               bin_dir / "podlab", motd]
    before = _fingerprint(watched)

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _stdout_lines(second) == ["install: system packages already present",
                                     "install: Python packages already present",
                                     "provision: login welcome already present"], second.stdout
    # stderr may only carry the kernel report (this CI kernel, unlike the box's, may lack netem).
    assert all(line.startswith("provision: warning: this kernel lacks")
               for line in second.stderr.splitlines() if line.strip()), second.stderr
    assert _fingerprint(watched) == before
