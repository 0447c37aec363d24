"""Free energies and phase coexistence with md_engine (they are MD): analytic references
(:mod:`~md_engine.free_energy.references`), nonequilibrium switching
(:mod:`~md_engine.free_energy.switching`) and the protocols built on it
(:mod:`~md_engine.free_energy.protocols`: NPT equilibration, spring constants, Frenkel–Ladd,
Uhlenbeck–Ford, reversible scaling, pressure sweep), and coexistence analysis
(:mod:`~md_engine.free_energy.coexistence`). The potentials they use live in
:mod:`md_engine.potentials` (``einstein``, ``uf``, ``coupled``, LJ ``tail``)."""
