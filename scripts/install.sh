#!/usr/bin/env bash
# Installs everything podlab needs, from nothing, idempotently: Debian/Ubuntu packages,
# a virtual environment with podlab in it, and `podlab` on PATH. Used by `make demo`,
# `make test` and the Vagrant VM's provisioning, so the three never drift apart.
# Prints one line per step; a second run changes nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${PODLAB_VENV:-$here/.venv}
bin_link=${PODLAB_BIN:-/usr/local/bin/podlab}

packages=(iproute2 iputils-ping curl nftables iptables iperf3 tcpdump util-linux procps
          python3 python3-venv python3-pip tmux dnsmasq-base mininet bridge-utils
          bird2 containernetworking-plugins)

if [ "$(id -u)" -ne 0 ]; then
  echo "install: needs root (run: sudo make demo, or sudo make test)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # bird2's package starts its own BGP daemon in the root namespace; podlab runs BIRD only inside
  # its labs, so the distribution's service is switched off when this script installed it.
  if [[ " ${missing[*]} " == *" bird2 "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now bird.service >/dev/null 2>&1 || true
  fi
else
  echo "install: system packages already present"
fi

python=${PODLAB_PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  echo "install: virtual environment in $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.podlab-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  echo "install: podlab and its Python packages"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$here[test]"
  touch "$stamp"
else
  echo "install: Python packages already present"
fi

# podlab's own modules compiled ahead: where PYTHONDONTWRITEBYTECODE is set (CI images, some
# shells) every command would otherwise compile ~80 modules again (0.15 s of a 0.2 s `get pods`).
"$venv/bin/python" -m compileall -q "$here/lab" "$here/tui" >/dev/null

# Compare resolved paths: a project reached through a symlink must not relink on every run.
if [ "$(readlink -f "$bin_link" 2>/dev/null)" != "$(readlink -f "$venv/bin/podlab")" ]; then
  ln -sf "$venv/bin/podlab" "$bin_link"
  echo "install: podlab is on PATH at $bin_link"
fi
