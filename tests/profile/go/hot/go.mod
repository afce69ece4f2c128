module vots-ops/tests/profile/hot

go 1.19
