"""Page logic below the views: which examples (paging), the page service, request declarations, JSON and rendered maps, export."""
