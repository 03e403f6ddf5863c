"""One seeded workload, with a profile per use (demo, ``sakk simulate``, bench, chaos).

- :mod:`tooling.workload.profiles`: the profiles and the traffic's mixes, as data;
- :mod:`tooling.workload.core`: what the generators share (messages and expectations,
  the simulated banks' keys, the reference data's accounts, hold lives and fees, a
  seeded minter of signed payments);
- :mod:`tooling.workload.traffic`: the realistic traffic (``sakk simulate``, the demo,
  the benchmark), labelled true by a shadow of every payer's funds;
- :mod:`tooling.workload.chaos` and :mod:`tooling.workload.flows`: the chaos harness's
  workload (poison, absurd payments, bank retries) and its lifecycle flows, every
  outcome known in advance.

The same seed and start give the same bytes in the same order, whichever profile.
"""
