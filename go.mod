module github.com/synkfs/synkfs

go 1.26.8
