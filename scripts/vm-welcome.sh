#!/bin/sh
# The podlab training VM's login welcome. provision.sh installs it as /etc/update-motd.d/60-podlab,
# which pam_motd runs at every `vagrant ssh` (Debian and Ubuntu alike).
cat <<'WELCOME'

  podlab: Kubernetes pod networking, built from real Linux namespaces
  --------------------------------------------------------------------
    sudo podlab up                    bring up a lab
    sudo podlab tui                   open the TUI
    sudo podlab exercise start 01     start exercise 1
    sudo podlab down --all            reset: remove every lab

  The project is in ~/podlab (synced from the host on `vagrant up` / `vagrant rsync`);
  `cd ~/podlab && sudo make test` runs the test suite.

WELCOME
