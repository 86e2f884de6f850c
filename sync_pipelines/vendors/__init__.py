"""HTTP clients for the vendors we sync with; each subpackage mirrors its fact sheet in /work/shared/api."""
