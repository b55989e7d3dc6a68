"""The soak: many ADD/DEL cycles with seeded faults, judged by looking at the system.

`observe` is the judge (what a container left: records, locks, leases, interfaces,
processes), `faults` plans one cycle from a seed, `node` holds the namespaces and
directories of a run, `runners` call multinet in-process or through its daemon,
`cycle` runs one planned cycle and `report` counts. `hack/soak.py` is the command.
"""
