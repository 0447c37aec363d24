"""``mlpot learn``: concurrent learning, the DP-GEN loop in-package (issue 17; Zhang et al., Comput.
Phys. Commun. 253, 107206 (2020)). Config (:mod:`~mlpot.workflows.learn.config`), task functions
(:mod:`~mlpot.workflows.learn.tasks`: train a member, explore, select, label), the pure candidate
selection (:mod:`~mlpot.workflows.learn.select`), the driver (:mod:`~mlpot.workflows.learn.loop`),
the results file and plots (:mod:`~mlpot.workflows.learn.report`)."""
