"""``mlpot phase``: phase diagrams from free energies (issue 13). Config
(:mod:`~mlpot.workflows.phase.config`), task functions (:mod:`~mlpot.workflows.phase.tasks`), the
analysis (:mod:`~mlpot.workflows.phase.analysis`), the driver (:mod:`~mlpot.workflows.phase.driver`)
and the plots. The physics lives in :mod:`md_engine.free_energy`."""
