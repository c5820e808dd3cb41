"""kcode.headless"""
