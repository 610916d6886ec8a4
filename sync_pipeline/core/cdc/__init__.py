"""Change capture as values: the triggers' DDL, the fan-out of a change, the slot's messages."""
