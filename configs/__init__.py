"""The shipped configs, installed as the package ``pgnm.configs`` (see pyproject.toml), so that
``--config pretrain/smoke`` finds ``pretrain/smoke.yaml`` here in any install
(pgnm/config_files.py). Only the YAML and JSON files travel; this file makes it a package."""
