#!/usr/bin/env bash
# Provisions the podlab training VM (see Vagrantfile): runs scripts/install.sh, the same script the
# README's `make` targets use, checks the kernel, and installs the login welcome.
# Idempotent: a second run changes nothing and says so. Usage: provision.sh [PROJECT_DIR]
# (Vagrant uploads this script elsewhere before running it, so it passes the synced folder.)
# Knobs for tests: PODLAB_VENV and PODLAB_BIN (read by install.sh), PODLAB_MOTD (welcome path).
set -euo pipefail

project=${1:-$(cd "$(dirname "$0")/.." && pwd)}
motd=${PODLAB_MOTD:-/etc/update-motd.d/60-podlab}

bash "$project/scripts/install.sh"

# Only report: the modules load on demand, and a missing one is for the trainer to see, not a
# reason to leave the VM half provisioned.
kconfig=/boot/config-$(uname -r)
missing=()
for option in VETH VXLAN NET_SCH_NETEM NF_TABLES; do
  if [ -r "$kconfig" ]; then
    grep -Eq "^CONFIG_$option=(y|m)$" "$kconfig" || missing+=("CONFIG_$option")
  elif [ -r /proc/config.gz ]; then
    zcat /proc/config.gz | grep -Eq "^CONFIG_$option=(y|m)$" || missing+=("CONFIG_$option")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "provision: warning: this kernel lacks ${missing[*]}; some labs will not work" >&2
fi

if [ -x "$motd" ] && cmp -s "$project/scripts/vm-welcome.sh" "$motd"; then
  echo "provision: login welcome already present"
else
  install -D -m 0755 "$project/scripts/vm-welcome.sh" "$motd"
  echo "provision: login welcome installed at $motd"
fi
