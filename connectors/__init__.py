"""Network connectors. `connectors.api` is the contract; each sub-package is one network."""
