"""placeholder"""
from gradatim.difficulty.vns_gap import vns_gap
