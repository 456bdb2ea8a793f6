"""Use-cases the pages and the CLI call. Every public function takes the acting user first."""
