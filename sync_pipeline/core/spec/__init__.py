"""The spec model: the YAML users write, validated once at the edge (sources, target, errors)."""
