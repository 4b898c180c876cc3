// FetchTests
