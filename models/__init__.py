"""Model specifications shipped with bayes_cart (TOML files; see bayes_cart.model.spec)."""
