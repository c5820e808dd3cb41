"""kcode.session"""
