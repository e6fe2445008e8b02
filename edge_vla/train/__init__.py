"""Training the edge-vla student (issue 5): simulator data, teacher labels, BC + DAgger, evaluation.

Modules (torch is needed by ``model`` and ``loop`` only):

- ``data``: seeded on-the-fly samples from ``SimWorld`` (states, views, action
  tokens in the runtime's grammar, pointer-cell labels); nothing is stored.
- ``teacher``: the simulator's privileged oracle, or any exported bundle.
- ``model``: student presets, the batch forward with the auxiliary pointer loss,
  and a torch runtime shim that decodes exactly like ``VLMRuntime`` (+ RoI).
- ``loop``: the trainer: curriculum, DAgger rounds, checkpoints, JSON-lines curve.
- ``evaluate``: grounding accuracy and closed-loop success for any runtime.

See ``edge_vla/train/README.md`` for the recipe and the commands.
"""
