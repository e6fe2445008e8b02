"""The closed loop beside the data path: verifying each action's visual effect, and the
stuck-loop watchdog that escalates when actions stop having effects."""
