"""kcode.evals"""
