"""Test instruments that ship with fedmist (fault injection); never imported by the runtimes themselves."""
