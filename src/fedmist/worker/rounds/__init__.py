"""The FedAvg-family runtime: rounds of global weights out, local updates back, folded as they stream in."""
