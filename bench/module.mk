# bench: fragment of the top-level Makefile (BENCHES += programs or scripts run by make bench).
