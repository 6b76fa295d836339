"""Real CNI plugins, run as a container runtime runs them (the cni attachment: lab.designs.cni).

  conflist   a network list loaded and checked as libcni loads one
  template   the list as containerd's CNI config template, rendered per node
  gojson     JSON as Go's encoding/json writes it (the bytes a plugin reads are libcni's)
  request    what each plugin is handed: kubelet's environment, containerd's capability arguments, its stdin
  plugins    the binaries: found in cniPath, executable, and the spec versions they speak
  invoke     one plugin run inside a node (its network and mount namespaces), with a timeout
  runtime    libcni's ADD, DEL and CHECK of a list over those runs
  cache      the results cache, in libcni's format and layout
  paths      where each node's own /run and /var/lib are in the lab's state
  runner     a lab's pods attached and detached, the nodes in parallel; teardown for down and clean
  status     what each pod got (its result, or the error kubelet shows), and the addresses it stands for
  log        every invocation, for `podlab cni log`
  changes    which pods a changed list makes again
  cli        podlab cni log | check | plugins
"""
